"""Configuration: environment variables, each also a CLI flag."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, PkiError
from .ids import parse_duration, validate_name

__all__ = ["Settings"]


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    master_key_file: Path
    instance: str
    #: Longest device certificate validity a request may ask for.
    max_device_days: int = 3650
    #: URL templates put into device certificates; ``{ca_sn}`` is replaced.
    crl_url: str | None = None
    ocsp_url: str | None = None
    #: Names in policy resources: acs:mq:{region}:{account}:{instance}.
    region: str = "local"
    account_id: str = "default"
    #: Longest lifetime a broker token may be applied for, in seconds (PKI_TOKEN_MAX_TTL, e.g. 1d).
    token_max_ttl: int = 86400

    @classmethod
    def load(
        cls,
        *,
        home: str | os.PathLike | None = None,
        database_url: str | None = None,
        master_key_file: str | os.PathLike | None = None,
        instance: str | None = None,
        environ: dict[str, str] | None = None,
    ) -> "Settings":
        """Flags win over ``PKI_*`` variables, which win over defaults."""
        env = os.environ if environ is None else environ
        home_path = Path(home or env.get("PKI_HOME") or ".pki").expanduser().absolute()
        url = database_url or env.get("PKI_DATABASE_URL") or f"sqlite:///{home_path / 'pki.db'}"
        key_file = Path(
            master_key_file or env.get("PKI_MASTER_KEY_FILE") or home_path / "master.key"
        ).expanduser().absolute()
        inst = validate_name(instance or env.get("PKI_INSTANCE") or "default", what="instance")
        max_days = env.get("PKI_MAX_DEVICE_DAYS", "3650")
        if not max_days.isdigit() or not 1 <= int(max_days) <= 36500:
            raise ConfigError(
                f"PKI_MAX_DEVICE_DAYS={max_days!r}: give a whole number of days from 1 to 36500",
                code="invalid_config",
            )
        return cls(
            home=home_path,
            database_url=url,
            master_key_file=key_file,
            instance=inst,
            max_device_days=int(max_days),
            crl_url=env.get("PKI_CRL_URL") or None,
            ocsp_url=env.get("PKI_OCSP_URL") or None,
            region=validate_name(env.get("PKI_REGION") or "local", what="PKI_REGION"),
            account_id=validate_name(env.get("PKI_ACCOUNT_ID") or "default", what="PKI_ACCOUNT_ID"),
            token_max_ttl=_token_max_ttl(env.get("PKI_TOKEN_MAX_TTL") or "1d"),
        )


def _token_max_ttl(text: str) -> int:
    try:
        seconds = int(parse_duration(text).total_seconds())
    except PkiError:
        seconds = 0
    if not 60 <= seconds <= 366 * 86400:
        raise ConfigError(f"PKI_TOKEN_MAX_TTL={text!r}: give a duration from 1m to 366d, e.g. 1h or 1d",
                          code="invalid_config")
    return seconds
