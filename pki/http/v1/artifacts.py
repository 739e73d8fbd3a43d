"""/v1/artifacts/publish: write broker artifacts into the directory the server was started with.

The directory is the server's (``pki serve --artifacts-dir``), never the
client's: a request cannot make the server write anywhere else.  Without
one, publishing over HTTP answers 409 ``publish_not_configured``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from ...errors import InvalidState
from ...services import artifacts
from .. import models as m
from ._common import CALLER, Caller, duration, out

router = APIRouter()


@router.post("/artifacts/publish", status_code=201, response_model=m.PublishOut,
             summary="Publish trust bundle, CRLs, capath and manifest into the server's artifacts directory")
def artifacts_publish(body: m.ArtifactsPublish, request: Request, caller: Caller = CALLER):
    caller.authorize("artifacts.publish")
    out_dir = request.app.state.artifacts_dir
    if out_dir is None:
        raise InvalidState("this server has no artifacts directory; start it with `pki serve --artifacts-dir DIR` "
                           "or run `pki artifacts publish --out DIR` locally", code="publish_not_configured")
    return out(caller.run("artifacts.publish", artifacts.publish, out_dir=out_dir, require_crls=body.require_crls,
                          keep=body.keep, crl_lifetime=duration(body.crl_lifetime),
                          listener_port=body.listener_port,
                          password_listener_port=body.password_listener_port), 201)
