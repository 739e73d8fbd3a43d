"""The `pki` command.  Parses, calls an operation (:mod:`.backend`: local store or server), renders."""

from __future__ import annotations

import importlib
import logging
import sys
import traceback

import click

from .. import __version__
from ..errors import InternalError, PkiError, io_error

__all__ = ["cli", "main"]

#: Every top-level command: name -> ("module:attribute", one-line help).  The module is imported only
#: when that command runs, so `pki --version`, `pki --help` and TAB completion import no store,
#: Alembic, cryptography or FastAPI, and `pki device show` imports only what device commands use.
#: ADDING A COMMAND GROUP IS ONE LINE HERE, e.g.
#:     "check": ("pki.cli.check:check_group", "Fleet audit checks."),
#: (not an import + cli.add_command, which would import the module on every run; that still works,
#: only slower).  tests/test_cli_startup.py checks that every entry imports and its help matches.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("pki.cli.ca:init_cmd", "Create (or upgrade) the data directory, the schema and the master key."),
    "code": ("pki.cli.ca:code_group", "Register codes: single-use challenges for proving possession of a CA key."),
    "ca": ("pki.cli.ca:ca_group", "Register, create and manage CA certificates."),
    "device": ("pki.cli.device:device_group", "Device certificates: issue, register, find, change status."),
    "secret": ("pki.cli.secret:secret_group", "Device secrets (one device, one secret) and enrollment groups."),
    "artifacts": ("pki.cli.artifacts:artifacts_group", "Broker artifacts: trust bundle, CRLs, mosquitto files."),
    "crl": ("pki.cli.artifacts:crl_group", "CRLs of registered CAs: request the entries, upload the signed CRL."),
    "user": ("pki.cli.access:user_group", "Users and their access keys (remote mode's credentials)."),
    "policy": ("pki.cli.access:policy_group", "Access policies: who may run which operation on what."),
    "audit": ("pki.cli.access:audit_group", "The hash-chained audit log: list, verify."),
    "serve": ("pki.cli.artifacts:serve_command", "Run the HTTP API, the broker hooks and the public endpoints."),
    "identity": ("pki.cli.dataplane:identity_group", "Username/password identities for applications and gateways."),
    "permission": ("pki.cli.dataplane:permission_group", "Data-plane permission rules: who may publish/subscribe where."),
    "blocklist": ("pki.cli.dataplane:blocklist_group", "Client ids, usernames or CIDRs refused at connect."),
    "hook-token": ("pki.cli.dataplane:hook_token_group", "Bearer tokens a broker presents to the /broker/ hooks."),
    "token": ("pki.cli.tokens:token_group", "Short-lived JWTs for broker clients, and the keys that sign them."),
    "claim": ("pki.cli.lifecycle:claim_group", "Enrollment claims: one-time passwords for EST first enrollment."),
    "est": ("pki.cli.est:est_group", "The device side of EST (RFC 7030): CA certificates, enroll, reenroll."),
    "keys": ("pki.cli.keys:keys_group", "Key custody: list the keys, rotate the master key."),
    "check": ("pki.cli.checks:check_group", "Fleet audit checks: expiry, CRLs, shared keys, the audit chain."),
}


class LazyGroup(click.Group):
    """A group whose subcommands come from :data:`LAZY_COMMANDS`, imported on first use.

    Commands added the eager way (``cli.add_command``) are found first, as in any click group.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        entry = LAZY_COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, _, attribute = entry[0].partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        self.commands[cmd_name] = command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The table's help, so that `pki --help` imports no command module.
        rows = [(name, self.commands[name].get_short_help_str() if name in self.commands else LAZY_COMMANDS[name][1])
                for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)



@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--home", envvar="PKI_HOME", help="Data directory [PKI_HOME, default ./.pki].")
@click.option("--database-url", envvar="PKI_DATABASE_URL",
              help="sqlite:///PATH or postgresql://... [PKI_DATABASE_URL, default SQLite under the home].")
@click.option("--master-key-file", envvar="PKI_MASTER_KEY_FILE",
              help="Key that encrypts private keys at rest [PKI_MASTER_KEY_FILE, default HOME/master.key].")
@click.option("--instance", envvar="PKI_INSTANCE", help="Broker deployment [PKI_INSTANCE, default 'default'].")
@click.option("--server", envvar="PKI_SERVER", metavar="URL",
              help="Remote mode: run every command against this `pki serve` [PKI_SERVER, or the profile's].")
@click.option("--access-key-id", envvar="PKI_ACCESS_KEY_ID", metavar="AK",
              help="Remote mode: the access key that signs requests [PKI_ACCESS_KEY_ID, or the profile's]. "
              "Its secret comes only from PKI_ACCESS_KEY_SECRET or the profile, never a flag (ps shows flags).")
@click.option("--profile", "profile", envvar="PKI_PROFILE", type=click.Path(dir_okay=False), metavar="FILE",
              help="Remote mode: JSON {server, access_key_id, access_key_secret}, mode 0600 "
              "[PKI_PROFILE, default ~/.config/pki/profile.json if it exists].")
@click.option("--local", is_flag=True, help="Use the local store even if PKI_SERVER or a profile names a server.")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.version_option(__version__, prog_name="pki")  # not package metadata: a scan of site-packages
@click.pass_context
def cli(ctx: click.Context, home, database_url, master_key_file, instance, server, access_key_id, profile, local,
        debug) -> None:
    """Device PKI: CAs, device certificates and secrets for MQTT fleets.

    Every command runs on the local store, or against a server (remote mode,
    requests signed) when PKI_SERVER or a profile names one.
    """
    from .common import Remote, State  # pki.config imports hashlib/hmac (OpenSSL): not for --version

    state = State(dict(home=home, database_url=database_url, master_key_file=master_key_file,
                        instance=instance),
                   Remote(server=server, access_key_id=access_key_id, profile=profile, local=local))
    ctx.obj = state
    ctx.meta["debug"] = debug
    ctx.call_on_close(state.close)


# -- entry point -----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; map errors through the one table, tracebacks only with --debug."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    # The services log why (a failed password check, a skipped CA...): the
    # details show with --debug, warnings always.
    logging.basicConfig(stream=sys.stderr, level=logging.INFO if debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        # Without standalone mode, click answers a command's click.exceptions.Exit(code) with the code
        # (`pki permission check` exits 7 on a deny after printing the decision).
        code = cli.main(args=args, prog_name="pki", standalone_mode=False)
        return code if type(code) is int else 0
    except PkiError as exc:
        if debug:
            traceback.print_exc()
        from .hints import render as render_error  # the error path only: start-up time
        from .render import EXIT_CODES

        click.echo(render_error(exc), err=True)
        return EXIT_CODES.get(exc.family, 1)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except OSError as exc:
        if debug:
            traceback.print_exc()
        from .hints import render as render_error
        from .render import EXIT_CODES

        err = io_error(exc)
        click.echo(render_error(err), err=True)
        return EXIT_CODES[err.family]
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if debug:
            traceback.print_exc()
        from .render import EXIT_CODES, error_line

        err = InternalError(f"unexpected {type(exc).__name__}; rerun with --debug and report it")
        click.echo(error_line(err.code, err.message), err=True)
        return EXIT_CODES["internal"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
