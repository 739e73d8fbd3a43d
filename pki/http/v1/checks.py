"""/v1/checks: the fleet audit checks (:mod:`pki.services.checks`), read-only.

The CRL check reads the generation published in the server's own artifacts
directory (``pki serve --artifacts-dir``) when it has one, else the CRLs in the store.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from ...services import checks
from ._common import CALLER, Caller, out

router = APIRouter()


class FindingOut(BaseModel):
    check_id: str
    severity: Literal["high", "medium", "low"]
    resource: str
    message: str
    remedy: str


class CheckReportOut(BaseModel):
    checked_at: str
    counts: dict[str, int]
    omitted: dict[str, int]
    findings: list[FindingOut]


@router.get("/checks", response_model=CheckReportOut, summary="Run the fleet audit checks")
def checks_run(request: Request,
               device_days: int = Query(checks.DEFAULT_DEVICE_DAYS_AHEAD, ge=0, le=checks.MAX_DAYS_AHEAD,
                                        description="A device certificate expiring within this many days is a finding."),
               ca_days: int = Query(checks.DEFAULT_CA_DAYS_AHEAD, ge=0, le=checks.MAX_DAYS_AHEAD,
                                    description="A CA certificate expiring within this many days is a finding."),
               per_check: int = Query(checks.DEFAULT_PER_CHECK, ge=1, le=100_000,
                                      description="Findings listed per check; the rest are counted in `omitted`."),
               caller: Caller = CALLER):
    return out(caller.run("check.run", checks.fleet_report, device_days=device_days, ca_days=ca_days,
                          artifacts_dir=request.app.state.artifacts_dir, per_check=per_check))
