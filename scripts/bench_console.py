"""Console benchmark: server time of a console page listing 1,000 devices, beside the JSON list route.

    .venv/bin/python scripts/bench_console.py [--devices 1000] [--n 40] [--database-url URL]

One run, one `pki` app under uvicorn on 127.0.0.1 (in this process, in a thread), one CA with
``--devices`` device certificates.  A lean ``http.client`` keep-alive connection asks, alternately:

(a) GET /console/cas/{ca}/devices?limit=N: the HTML page (session cookie: the session row read and
    the user's policies checked, the page authorized as device.list, 1,000 rows rendered);
(b) GET /v1/cas/{ca}/devices?limit=N: the same page as JSON, each request signed (HMAC, nonce
    stored, policy checked): the baseline;
(c) GET /console: the overview (grouped counts over every device).

"Server time" is the access log's duration_ms (pki.http.middleware: from the first byte of the
request to the last byte of the answer, inside the server), not what the client saw.  In process, the
three designs tried for the page (A, B, C below) are timed by halves (list call, rendering of the rows):
that says where a page's time goes.  Medians and
p90 over ``--n`` requests each, with the machine's load average: it is a shared machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import re
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from pki import signing  # noqa: E402
from pki.config import Settings  # noqa: E402
from pki.http import create_app  # noqa: E402
from pki.http.middleware import ACCESS_LOG  # noqa: E402
from pki.services import devices, managed, users  # noqa: E402
from pki.services.context import open_context  # noqa: E402
from pki.services.setup import initialise  # noqa: E402


def _csr(cn: str, key) -> bytes:
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


class _Durations(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.by_path: dict[str, list[float]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = json.loads(record.getMessage())
        except ValueError:
            return
        self.by_path.setdefault(line["path"], []).append(line["duration_ms"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stats(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()

    import uvicorn

    home = Path(tempfile.mkdtemp(prefix="bench-console-"))
    settings = Settings.load(home=home, database_url=args.database_url, instance="default", environ={})
    initialise(settings)
    ctx = open_context(settings)
    admin = users.create_user(ctx, "bench")
    from pki.services import policies

    policies.attach_policy(ctx, "PkiAdministratorAccess", user="bench")
    ca = managed.create_ca(ctx, name="Bench Root")
    key = ec.generate_private_key(ec.SECP256R1())
    started = time.perf_counter()
    for i in range(args.devices):
        devices.issue_device(ctx, ca=ca.sn, csr=_csr(f"meter-{i:06d}", key))
    print(f"setup: {args.devices} devices issued in {time.perf_counter() - started:.1f} s "
          f"({ctx.store.dialect})", flush=True)

    durations = _Durations()
    ACCESS_LOG.addHandler(durations)
    ACCESS_LOG.setLevel(logging.INFO)
    ACCESS_LOG.propagate = False
    port = _free_port()
    server_ctx = open_context(settings)
    server = uvicorn.Server(uvicorn.Config(create_app(lambda: server_ctx), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)

    conn = http.client.HTTPConnection("127.0.0.1", port)

    def request(method, path, body=b"", headers=None):
        conn.request(method, path, body=body, headers=headers or {})
        answer = conn.getresponse()
        return answer, answer.read()

    # Sign in as a browser would: the form's token, then the session cookie.
    answer, page = request("GET", "/console/sign-in")
    pre = re.search(rb'name="csrf" value="([^"]+)"', page).group(1).decode()
    pre_cookie = answer.getheader("set-cookie").split(";")[0]
    form = urllib.parse.urlencode({"csrf": pre, "access_key_id": admin.access_key_id,
                                   "secret": admin.access_key_secret}).encode()
    answer, _ = request("POST", "/console/sign-in", form, {"Content-Type": "application/x-www-form-urlencoded",
                                                           "Cookie": pre_cookie})
    cookie = [v for k, v in answer.getheaders() if k.lower() == "set-cookie" and v.startswith("pki_console=")]
    session = {"Cookie": cookie[0].split(";")[0]}

    html_path = f"/console/cas/{ca.sn}/devices?limit={args.devices}"
    json_path = f"/v1/cas/{ca.sn}/devices"
    query = f"limit={args.devices}"

    def html():
        answer, body = request("GET", html_path, headers=session)
        assert answer.status == 200 and body.count(b'<th scope="row">') == args.devices, answer.status
        return len(body)

    def api():
        headers = signing.signed_headers(access_key_id=admin.access_key_id, secret=admin.access_key_secret,
                                         method="GET", path=json_path, query=query)
        answer, body = request("GET", f"{json_path}?{query}", headers=headers)
        assert answer.status == 200 and len(json.loads(body)["items"]) == args.devices, answer.status
        return len(body)

    def overview():
        answer, body = request("GET", "/console", headers=session)
        assert answer.status == 200
        return len(body)

    for _ in range(5):  # warm-up: templates compiled, caches filled
        html(), api(), overview()
    durations.by_path.clear()
    sizes = {}
    client: dict[str, list[float]] = {"html": [], "json": [], "overview": []}
    load_before = os.getloadavg()
    for _ in range(args.n):
        for name, fn in (("html", html), ("json", api), ("overview", overview)):
            t0 = time.perf_counter()
            sizes[name] = fn()
            client[name].append((time.perf_counter() - t0) * 1000)
    load_after = os.getloadavg()

    # In process, the three designs tried (list call + rendering of the rows), each timed by halves:
    # A: the API's list (DevicePublic) rendered by a Jinja loop (a macro and filters per row);
    # B: the API's list rendered by the one-pass row renderer (web._device_rows);
    # C: the console's light rows (console.list_devices: 6 columns, no validation) + the row renderer (shipped).
    from pki.http.console import web
    from pki.services import console

    loop = web._ENV.from_string(
        '{% from "macros.html" import status as badge %}{% for d in items %}<tr><th scope="row"><a href="/console/'
        'cas/{{ d.ca_sn }}/devices/{{ d.sn }}">{{ d.client_id }}</a></th><td><code class="sn">{{ d.sn }}</code>'
        '</td><td>{{ badge(d.status) }}</td><td>{{ d.not_after|when }}</td></tr>{% endfor %}')
    designs = {
        "A": (lambda: devices.list_devices(ctx, ca=ca.sn, limit=args.devices), lambda p: loop.render(items=p.items)),
        "B": (lambda: devices.list_devices(ctx, ca=ca.sn, limit=args.devices),
              lambda p: web._device_rows(p.items, False)),
        "C": (lambda: console.list_devices(ctx, ca=ca.sn, limit=args.devices),
              lambda p: web._device_rows(p.items, False)),
    }
    split: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in designs}
    for _ in range(max(10, args.n // 2)):
        for name, (fetch, render) in designs.items():
            t0 = time.perf_counter()
            page_obj = fetch()
            t1 = time.perf_counter()
            render(page_obj)
            split[name][0].append((t1 - t0) * 1000)
            split[name][1].append((time.perf_counter() - t1) * 1000)

    server.should_exit = True
    thread.join(timeout=10)
    server_ctx.close()
    ctx.close()

    html_server = durations.by_path[f"/console/cas/{ca.sn}/devices"]
    json_server = durations.by_path[json_path]
    over_server = durations.by_path["/console"]
    base = statistics.median(json_server)
    print(f"load average before {load_before[0]:.2f} / after {load_after[0]:.2f} "
          f"({os.cpu_count()} CPUs); {args.n} requests per row; store {server_ctx.store.dialect}")
    print(f"{'row':52} {'server p50':>11} {'p90':>8} {'client p50':>11} {'bytes':>8} {'x JSON':>7}")
    rows = (
        (f"(a) console page, {args.devices} devices (HTML)", html_server, client["html"], sizes["html"]),
        (f"(b) JSON list route, {args.devices} devices (baseline)", json_server, client["json"], sizes["json"]),
        ("(c) console overview", over_server, client["overview"], sizes["overview"]),
    )
    for label, server_times, client_times, size in rows:
        p50, p90 = _stats(server_times)
        print(f"{label:52} {p50:9.1f}ms {p90:6.1f}ms {_stats(client_times)[0]:9.1f}ms {size:8d} "
              f"{p50 / base:6.2f}x")
    for name, label in (("A", "API list + Jinja loop"), ("B", "API list + row renderer"),
                        ("C", "console rows + row renderer (shipped)")):
        fetch_ms, render_ms = (statistics.median(v) for v in split[name])
        print(f"in process, design {name} ({label}): list {fetch_ms:.1f} ms + rows {render_ms:.1f} ms "
              f"= {fetch_ms + render_ms:.1f} ms (medians)")
    target = _stats(html_server)[0]
    print(f"target: a {args.devices}-device page under 100 ms server time: "
          f"{'MET' if target < 100 else 'MISSED'} (p50 {target:.1f} ms)")


if __name__ == "__main__":
    main()
