"""`pki check run`: the fleet audit checks (:mod:`pki.services.checks`)."""

from __future__ import annotations

import click

from . import backend
from .common import State, json_option
from .render import printable

__all__ = ["check_group", "FINDINGS_EXIT"]

#: The exit code of `pki check run --fail-on S` when a finding of severity S or worse is found: apart from
#: the error families' codes (pki.cli.render.EXIT_CODES), since the run itself succeeded.
FINDINGS_EXIT = 12
_SEVERITIES = ("high", "medium", "low")


@click.group("check")
def check_group() -> None:
    """Fleet audit checks: expiring certificates, stale CRLs, shared or weak keys, a broken audit log..."""


@check_group.command("run")
@click.option("--device-days", type=int, default=30, show_default=True,
              help="A device certificate expiring within this many days is a finding.")
@click.option("--ca-days", type=int, default=90, show_default=True,
              help="A CA certificate expiring within this many days is a finding.")
@click.option("--artifacts-dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Check the CRLs of the generation published in DIR (local only; a server checks its own "
                   "--artifacts-dir). Default: the CRLs in the store.")
@click.option("--per-check", type=int, default=1000, show_default=True,
              help="Findings listed per check; the rest are counted.")
@click.option("--fail-on", type=click.Choice(_SEVERITIES), metavar="high|medium|low",
              help=f"Exit {FINDINGS_EXIT} when a finding of this severity or worse is found.")
@json_option
@click.pass_obj
def check_run(state: State, device_days, ca_days, artifacts_dir, per_check, fail_on, as_json) -> None:
    """Run every check over the instance and list the findings, most severe first."""
    if artifacts_dir is not None and backend.is_remote(state):
        raise click.UsageError("--artifacts-dir is local-only: a server checks the directory of its own "
                               "`pki serve --artifacts-dir`")
    report = backend.call(state, "check.run", device_days=device_days, ca_days=ca_days,
                          artifacts_dir=artifacts_dir, per_check=per_check)
    if as_json:
        import json

        click.echo(json.dumps(report, indent=2, sort_keys=True))
    else:
        _show(report)
    if fail_on is not None:
        worst = _SEVERITIES[: _SEVERITIES.index(fail_on) + 1]
        if any(report["counts"].get(s, 0) for s in worst):
            raise click.exceptions.Exit(FINDINGS_EXIT)


def _show(report: dict) -> None:
    counts = report["counts"]
    for f in report["findings"]:
        click.echo(f"{f['severity'].upper():6}  {f['check_id']}  {printable(f['resource'])}")
        click.echo(f"        {printable(f['message'])}")
        click.echo(f"        fix: {printable(f['remedy'])}")
    for check_id, n in sorted(report.get("omitted", {}).items()):
        click.echo(f"({n} more {check_id} finding(s) not listed; raise --per-check to see them)")
    total = sum(counts.values())
    summary = ", ".join(f"{counts.get(s, 0)} {s}" for s in _SEVERITIES)
    click.echo(f"{total} finding(s): {summary}" if total else "no findings: every check passed")
