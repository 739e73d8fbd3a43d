"""The ASGI layer under every route: request id, body cap, source IP, access log.

Pure ASGI (no BaseHTTPMiddleware): it costs microseconds per request.

- **Request id**: a client's ``X-Request-Id`` is kept if well-formed
  (1-128 of ``A-Z a-z 0-9 . _ : -``), else one is made; it is echoed on every
  answer, put in problem bodies and on the audit log.
- **Body cap**: the body is read here, up to ``max_body`` bytes (413
  ``request_too_large`` beyond, declared or not), and kept in
  ``scope["state"]["body"]`` for the signature check, then replayed to the app.
- **Source IP**: the peer address; ``X-Forwarded-For`` only when the peer is
  one of ``trusted_proxies`` (then the right-most address not a trusted proxy).
- **Access log**: one JSON line per request on logger ``pki.http.access``:
  method, path, status, duration_ms, principal, request_id, source_ip.  Never
  a body, a query string or a header value.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import time

from .problems import problem_bytes

__all__ = ["PkiMiddleware", "ACCESS_LOG"]

ACCESS_LOG = logging.getLogger("pki.http.access")
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}\Z")


class PkiMiddleware:
    def __init__(self, app, *, max_body: int, trusted_proxies=()) -> None:
        self.app = app
        self.max_body = max_body
        self.trusted = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]

    def _trusted(self, ip: str | None) -> bool:
        if not ip or not self.trusted:
            return False
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self.trusted)

    def _source_ip(self, scope) -> str | None:
        """The peer, or behind a trusted proxy the right-most X-Forwarded-For hop that is not one.

        Several X-Forwarded-For lines are one comma-separated list, in order (RFC 9110 5.3): reading only
        the first would take the line the client wrote, not the one its proxy appended.  A hop that is not
        an IP address raises ValueError (the request is refused).
        """
        client = scope.get("client")
        ip = client[0] if client else None
        if not self._trusted(ip):
            return ip
        lines = [value.decode("latin-1") for name, value in scope.get("headers", ()) if name == b"x-forwarded-for"]
        hops = [h.strip() for h in ",".join(lines).split(",") if h.strip()]
        for hop in reversed(hops):
            address = str(ipaddress.ip_address(hop))  # ValueError: not an address
            if not self._trusted(address):
                return address
        return hops[0] if hops else ip

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = None
        declared = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id" and _REQUEST_ID.match(value):
                request_id = value.decode("ascii")
            elif name == b"content-length":
                declared = value
        request_id = request_id or os.urandom(16).hex()  # uuid4().hex's form, at a third of its cost
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status_holder = [500]

        async def send_wrapper(message) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                message = dict(message)
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
            await send(message)

        async def refuse(status: int, code: str, detail: str) -> None:
            body = problem_bytes(status, code, detail, request_id)
            await send_wrapper({"type": "http.response.start", "status": status, "headers": [
                (b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        try:
            try:
                state["source_ip"] = self._source_ip(scope)
                # Whether the peer is a --trusted-proxy: only then is a client certificate header believed (est.py).
                state["peer_trusted"] = self._trusted(scope["client"][0] if scope.get("client") else None)
            except ValueError:
                await refuse(400, "invalid_forwarded_for", "X-Forwarded-For holds a value that is not an IP "
                             "address; a trusted proxy must send addresses only")
                return
            too_large = (f"the body is larger than {self.max_body} bytes; send less (or split the batch)")
            if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
                await refuse(413, "request_too_large", too_large)
                return
            chunks = []
            size = 0
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body:
                    await refuse(413, "request_too_large", too_large)
                    return
                chunks.append(chunk)
                more = message.get("more_body", False)
            body = b"".join(chunks)
            state["body"] = body
            replayed = [False]

            async def replay():
                if not replayed[0]:
                    replayed[0] = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send_wrapper)
        finally:
            if ACCESS_LOG.isEnabledFor(logging.INFO):
                ACCESS_LOG.info(json.dumps({
                    "method": scope.get("method"), "path": scope.get("path"), "status": status_holder[0],
                    "duration_ms": round((time.perf_counter() - start) * 1000, 3),
                    "principal": state.get("principal"), "request_id": request_id,
                    "source_ip": state.get("source_ip"),
                }, separators=(",", ":")))
