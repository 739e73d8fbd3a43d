"""What every command module shares: state (local store or remote server), options, input reading."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import click

from ..config import Settings
from ..errors import ConfigError

__all__ = ["State", "Remote", "json_option", "read_input", "file_arg", "CA_FIELDS", "default_profile_path"]

CA_FIELDS = ("sn", "name", "status", "source", "subject", "issuer", "not_before", "not_after",
             "fingerprint_sha256", "key_type", "warnings")

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")

#: Largest profile file read (it holds three short strings).
_MAX_PROFILE_BYTES = 64 * 1024
_PROFILE_KEYS = ("server", "access_key_id", "access_key_secret", "ca_bundle")


def default_profile_path(environ=None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(Path("~/.config").expanduser())
    return Path(base) / "pki" / "profile.json"


class Remote:
    """Where and as whom remote mode talks: server URL, access key id, secret (never from argv)."""

    def __init__(self, *, server: str | None, access_key_id: str | None, profile: str | None,
                 local: bool) -> None:
        self.server = server
        self.access_key_id = access_key_id
        self.profile = profile
        self.local = local

    def resolve(self, environ=None) -> tuple[str, str, str] | None:
        """``(server, access_key_id, secret)`` in remote mode, None in local mode.

        The server and key id come from the flags (or PKI_SERVER, PKI_ACCESS_KEY_ID, which click
        already folded into them), then the profile; the secret only from PKI_ACCESS_KEY_SECRET
        or the profile, which must be private to its owner (mode 0600), like an ssh key.
        """
        env = os.environ if environ is None else environ
        server = self.named_server(env)
        if server is None:
            return None
        profile = self._profile(env)
        key_id = self.access_key_id or profile.get("access_key_id")
        secret = env.get("PKI_ACCESS_KEY_SECRET") or profile.get("access_key_secret")
        if not key_id or not secret:
            missing = " and ".join(n for n, v in (("PKI_ACCESS_KEY_ID", key_id), ("PKI_ACCESS_KEY_SECRET", secret))
                                   if not v)
            raise ConfigError(
                f"remote mode ({server}) needs {missing}: set the variable, or put access_key_id and "
                f"access_key_secret in a profile file (mode 0600, {default_profile_path(env)} or --profile FILE); "
                "`pki user create` or `pki user key create` gives a key", code="missing_credentials")
        return server, key_id, secret

    def named_server(self, environ=None) -> str | None:
        """The server remote mode would use (None in local mode), credentials not needed."""
        if self.local:
            return None
        env = os.environ if environ is None else environ
        return self.server or self._profile(env).get("server") or None

    def ca_bundle(self, environ=None) -> str | None:
        """The PEM file an https server must chain to: PKI_CA_BUNDLE, then the profile's ca_bundle."""
        env = os.environ if environ is None else environ
        return env.get("PKI_CA_BUNDLE") or self._profile(env).get("ca_bundle") or None

    def _profile(self, env) -> dict:
        explicit = self.profile or env.get("PKI_PROFILE")
        path = Path(explicit).expanduser() if explicit else default_profile_path(env)
        if not explicit and not path.exists():
            return {}
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise ConfigError(f"cannot read profile {path}: {exc.strerror}", code="profile_unreadable") from None
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ConfigError(f"profile {path} is not a regular file", code="profile_unreadable")
            if info.st_mode & 0o077:
                raise ConfigError(
                    f"profile {path} holds a secret but is open to others (mode {stat.S_IMODE(info.st_mode):04o}); "
                    f"run `chmod 600 {path}`", code="profile_insecure")
            raw = fh.read(_MAX_PROFILE_BYTES + 1)
        try:
            data = json.loads(raw) if len(raw) <= _MAX_PROFILE_BYTES else None
        except ValueError:
            data = None
        if not isinstance(data, dict) or any(not isinstance(data.get(k, ""), str) for k in _PROFILE_KEYS):
            raise ConfigError(f'profile {path} must be a JSON object {{"server": "https://...", "access_key_id": '
                              '"AK...", "access_key_secret": "..."}} with string values', code="invalid_profile")
        unknown = sorted(set(data) - set(_PROFILE_KEYS))
        if unknown:
            raise ConfigError(f"profile {path}: unknown key {unknown[0]!r}; the keys are {', '.join(_PROFILE_KEYS)}",
                              code="invalid_profile")
        return data


class State:
    """What a command runs against: the local store (:meth:`context`) or a server (:meth:`remote`).

    Commands do not choose; :mod:`pki.cli.backend` asks :meth:`remote` first.
    """

    def __init__(self, settings_kwargs: dict, remote: Remote | None = None) -> None:
        self._kwargs = settings_kwargs
        self._remote_config = remote or Remote(server=None, access_key_id=None, profile=None, local=True)
        self._ctx = None
        self._client = None
        self._resolved = False

    @property
    def settings(self) -> Settings:
        return Settings.load(**self._kwargs)

    def context(self):
        if self._ctx is None:
            from ..services import open_context  # the store only for commands that use it

            self._ctx = open_context(self.settings)
        return self._ctx

    def remote(self):
        """A signing :class:`pki.client.Client` in remote mode, else None."""
        if not self._resolved:
            found = self._remote_config.resolve()
            self._resolved = True
            if found is not None:
                from ..client import Client

                server, key_id, secret = found
                self._client = Client(server, key_id, secret, ca_bundle=self._remote_config.ca_bundle())
        return self._client

    @property
    def server(self) -> str | None:
        """The server URL in remote mode (no credentials needed to say which)."""
        return self._remote_config.named_server()

    def close(self) -> None:
        if self._ctx is not None:
            self._ctx.close()
        if self._client is not None:
            self._client.close()


def read_input(path: str, *, limit: int) -> bytes:
    """Read at most one byte past the limit, so a huge file is refused, not loaded."""
    with open(path, "rb") as fh:
        return fh.read(limit + 1)


def file_arg(**kw):
    return click.Path(exists=True, dir_okay=False, readable=True, **kw)
