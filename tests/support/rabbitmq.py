"""A private RabbitMQ node (with rabbitmq_mqtt and rabbitmq_auth_backend_http) and a recording auth backend.

The node is the distribution's rabbitmq-server started as a second node of its
own: node name ``pkitest-<random>@localhost``, free loopback ports for AMQP,
Erlang distribution and MQTT, no management or Prometheus listener (those
plugins are not enabled), and everything it writes (Erlang cookie, Mnesia,
logs, plugin expansion, feature flags) under one temporary directory. The
machine's own node, its cookie (/var/lib/rabbitmq/.erlang.cookie) and its
config (/etc/rabbitmq) are never read or touched:

- the unwrapped script /usr/lib/rabbitmq/bin/rabbitmq-server runs as the
  current user. Debian's /usr/sbin wrapper would ``su rabbitmq``, which resets
  HOME to /var/lib/rabbitmq and so picks up the machine's cookie;
- HOME is the private directory, so Erlang makes and reads the cookie there
  (``erlang:get_cookie()`` is checked against it at start);
- RABBITMQ_CONF_ENV_FILE points at a private file, because
  /etc/rabbitmq/rabbitmq-env.conf sets NODENAME for the machine's node.

Each HTTP backend request goes to an `AuthRelay`, a stdlib HTTP server on a
free loopback port that records it (`AuthRequest`) and answers what the test
says: a function, or `AuthRelay.forward_to` another server (e.g. a real
``pki serve``). Because the node only knows the relay, one node serves a whole
session while each test chooses its backend.

What rabbitmq_auth_backend_http sends (its README,
https://github.com/rabbitmq/rabbitmq-server/tree/main/deps/rabbitmq_auth_backend_http):
``user_path`` (username, password), ``vhost_path`` (username, vhost, ip),
``resource_path`` (username, vhost, resource, name, permission) and
``topic_path`` (the same plus routing_key), as a query string with GET or a
form body with POST; the answer is 200 with ``allow``, ``allow TAGS`` (user
only) or ``deny``. rabbitmq_mqtt (https://www.rabbitmq.com/mqtt.html) maps an
MQTT topic to a routing key on the ``amq.topic`` exchange with ``.`` for ``/``
(``a/b`` -> ``a.b``); ``mqtt.allow_anonymous = false`` stops it from logging
clients without credentials in as ``mqtt.default_user``. The exact requests of
an MQTT session are recorded in tests/data/rabbitmq_auth_requests.json by
tests/test_harness_rabbitmq.py.

Usage, with the session fixtures (imported by tests/conftest.py)::

    pytestmark = pytest.mark.slow

    def test_x(rabbitmq):                      # a started RabbitNode, backends = http only
        rabbitmq.auth.decide = lambda req: "allow" if ... else "deny"
        rabbitmq.auth.forward_to("http://127.0.0.1:PORT/broker/rabbitmq")   # or a real server
        connect_result(rabbitmq.mqtt_port, "user", "pw")
        rabbitmq.auth.requests                 # what RabbitMQ asked, in order

or a node of its own (another backend order, say) with ``private_rabbitmq``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support import skip_or_fail
from tests.support.http_app import free_port

__all__ = [
    "AuthRelay",
    "AuthRequest",
    "RabbitNode",
    "private_rabbitmq",
    "rabbitmq",
    "rabbitmq_auth",
    "rabbitmq_conf",
    "require_rabbitmq",
]

#: Bounds only so that a wedged node cannot hang the run; nothing asserts on time.
START_SECONDS = 90
STOP_SECONDS = 30

#: The four paths of rabbitmq_auth_backend_http, as the relay serves them.
AUTH_PATHS = ("user", "vhost", "resource", "topic")

_SCRIPTS = Path("/usr/lib/rabbitmq/bin")


def _script(name: str) -> str | None:
    """The unwrapped script (see the module docstring), else what PATH has (a generic-unix install)."""
    if (_SCRIPTS / name).exists():
        return str(_SCRIPTS / name)
    found = shutil.which(name)
    if found and Path(found).resolve().parent != Path("/usr/sbin"):
        return found
    return None


def require_rabbitmq() -> tuple[str, str]:
    """(rabbitmq-server, rabbitmqctl); skips on a developer machine, fails under CI=true."""
    server, ctl = _script("rabbitmq-server"), _script("rabbitmqctl")
    if server is None or ctl is None:
        skip_or_fail("rabbitmq-server is not installed (Debian: apt-get install rabbitmq-server)")
    return server, ctl


# -- the recording HTTP auth backend ---------------------------------------------------------------


@dataclass
class AuthRequest:
    """One request from rabbitmq_auth_backend_http, as received, and the relay's answer."""

    path: str  # "user", "vhost", "resource" or "topic": the last segment of the URL
    method: str  # "GET" or "POST"
    params: dict[str, str]  # query string (GET) or form body (POST)
    content_type: str | None
    authorization: str | None  # from user:password in the configured URL, if any
    answer: tuple[int, str] | None = None  # (status, body)

    def as_dict(self) -> dict:
        return {"path": self.path, "method": self.method, "params": self.params,
                "content_type": self.content_type, "authorization": self.authorization,
                "answer": list(self.answer) if self.answer else None}


Decision = Callable[[AuthRequest], "str | tuple[int, str]"]


def deny_all(_request: AuthRequest) -> str:
    return "deny"


@dataclass
class AuthRelay:
    """A loopback HTTP server that records every request and answers ``decide(request)``.

    ``decide`` returns the body (``allow``/``deny``/``allow tag``) or (status, body).
    An exception in it answers 500, which RabbitMQ treats as a refusal.
    """

    decide: Decision = deny_all
    requests: list[AuthRequest] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                raw = url.query if self.command == "GET" else body
                request = AuthRequest(
                    path=url.path.rstrip("/").rsplit("/", 1)[-1], method=self.command,
                    params=dict(urllib.parse.parse_qsl(raw, keep_blank_values=True)),
                    content_type=self.headers.get("Content-Type"),
                    authorization=self.headers.get("Authorization"))
                relay.requests.append(request)
                try:
                    answer = relay.decide(request)
                    status, text = answer if isinstance(answer, tuple) else (200, answer)
                except Exception as exc:  # the test's own bug: show it in the answer, refuse
                    status, text = 500, repr(exc)
                request.answer = (status, text)
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _handle

            def log_message(self, *_args) -> None:  # keep pytest's output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str, userinfo: str | None = None) -> str:
        """The URL to configure as ``auth_http.<path>_path``."""
        at = f"{userinfo}@" if userinfo else ""
        return f"http://{at}127.0.0.1:{self.port}/auth/{path}"

    def reset(self, decide: Decision = deny_all) -> None:
        """Forget the recorded requests and answer with ``decide`` from now on."""
        self.requests.clear()
        self.decide = decide

    def forward_to(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        """Answer each request by sending it on to ``base_url/<path>`` unchanged (method, query or form).

        ``headers`` are added, e.g. ``{"Authorization": "Bearer <hook token>"}``.
        """
        def decide(request: AuthRequest) -> tuple[int, str]:
            form = urllib.parse.urlencode(request.params)
            url = f"{base_url.rstrip('/')}/{request.path}"
            data = None
            if request.method == "GET":
                url += f"?{form}"
            else:
                data = form.encode()
            req = urllib.request.Request(url, data=data, method=request.method, headers={
                **({"Content-Type": request.content_type} if request.content_type else {}),
                **({"Authorization": request.authorization} if request.authorization else {}),
                **(headers or {})})
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    return resp.status, resp.read().decode()
            except urllib.error.HTTPError as err:
                return err.code, err.read().decode()

        self.decide = decide

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# -- the node ----------------------------------------------------------------------------------------


def rabbitmq_conf(*, amqp_port: int, mqtt_port: int, backends: Sequence[str] = ("http",),
                  http_paths: dict[str, str] | None = None, http_method: str = "post",
                  allow_anonymous: bool = False, default_user: str = "pkitest-admin",
                  default_pass: str | None = None, extra: str = "") -> str:
    """A rabbitmq.conf (new-style, sysctl format) for a test node.

    ``backends`` is the auth backend order (``internal``, ``http``, ``cache``...),
    ``http_paths`` maps user/vhost/resource/topic to their URLs.
    """
    default_pass = default_pass or secrets.token_hex(16)
    lines = [
        f"listeners.tcp.local = 127.0.0.1:{amqp_port}",
        f"mqtt.listeners.tcp.local = 127.0.0.1:{mqtt_port}",
        f"mqtt.allow_anonymous = {str(allow_anonymous).lower()}",
        # Not guest/guest: with the internal backend in the list, only the test knows this password.
        f"default_user = {default_user}",
        f"default_pass = {default_pass}",
        "log.console = false",
        "log.file.level = info",
    ]
    lines += [f"auth_backends.{i} = {backend}" for i, backend in enumerate(backends, 1)]
    if http_paths:
        lines.append(f"auth_http.http_method = {http_method}")
        lines += [f"auth_http.{name}_path = {url}" for name, url in http_paths.items()]
    return "\n".join(lines) + "\n" + extra


def _mqtt_probe(port: int) -> bool:
    """True once the MQTT listener answers a CONNECT with a CONNACK (of any code).

    The CONNECT carries no credentials: with allow_anonymous = false the plugin
    refuses it itself, so the probe never reaches an auth backend.
    """
    client_id = b"pkitest-probe"
    var = b"\x00\x04MQTT\x04\x02\x00\x0a"  # protocol 3.1.1, clean session, keepalive 10 s
    payload = len(client_id).to_bytes(2, "big") + client_id
    packet = b"\x10" + bytes([len(var) + len(payload)]) + var + payload
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(packet)
            return sock.recv(4)[:1] == b"\x20"
    except OSError:
        return False


class RabbitNode:
    """One private node: ``start``, ``ctl(...)``, ``stop``. See the module docstring."""

    def __init__(self, root: Path, conf: Callable[["RabbitNode"], str], *,
                 plugins: Sequence[str] = ("rabbitmq_mqtt", "rabbitmq_auth_backend_http")) -> None:
        self.server_script, self.ctl_script = require_rabbitmq()
        self.root = Path(root)
        self.name = f"pkitest-{secrets.token_hex(4)}@localhost"
        self.amqp_port, self.dist_port, self.mqtt_port = free_port(), free_port(), free_port()
        self.home = self.root / "home"
        self.log_dir = self.root / "log"
        for d in (self.home, self.log_dir, self.root / "mnesia"):
            d.mkdir(parents=True, exist_ok=True)
        self.admin_user, self.admin_password = "pkitest-admin", secrets.token_hex(16)
        self.cookie = secrets.token_hex(16).upper()
        cookie_file = self.home / ".erlang.cookie"
        cookie_file.write_text(self.cookie)
        cookie_file.chmod(0o400)  # Erlang refuses a cookie file others can read
        (self.root / "rabbitmq-env.conf").write_text("# the test node's own: nothing from /etc\n")
        (self.root / "enabled_plugins").write_text(f"[{','.join(plugins)}].\n")
        (self.root / "rabbitmq.conf").write_text(conf(self))
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))},
            "HOME": str(self.home),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.root / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.log_dir),
            "RABBITMQ_PID_FILE": str(self.root / "node.pid"),
            # Erlang distribution on loopback only, as the machine's node does.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }
        self.proc: subprocess.Popen | None = None
        self.startup_seconds: float | None = None
        self.auth: AuthRelay | None = None  # set by private_rabbitmq
        self.http_backend: tuple[str, str | None] = ("post", None)  # (method, userinfo) of the relay URLs

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def log_text(self) -> str:
        parts = [p.read_text(errors="replace") for p in (self.log_file, self.root / "stdout.log") if p.exists()]
        return "\n".join(parts)

    def ctl(self, *args: str, timeout: float = STOP_SECONDS) -> subprocess.CompletedProcess:
        """``rabbitmqctl -n NODE ARGS`` with the node's private HOME (so its cookie)."""
        return subprocess.run([self.ctl_script, "-n", self.name, *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def point_http_backend(self, *, method: str = "post", userinfo: str | None = None) -> None:
        """Re-point the running node's http backend at its relay, with this method and URL userinfo.

        Sets the application environment that rabbitmq.conf's ``auth_http.http_method``
        and ``auth_http.*_path`` become; the plugin reads it at every request, so
        this is the same as a node started with that config, without a restart.
        RabbitMQ's HTTP client (Erlang httpc) sends ``user:password`` from the URL as
        a Basic Authorization header without percent-decoding it.
        """
        assert method in ("get", "post") and self.auth is not None
        terms = [f"application:set_env(rabbitmq_auth_backend_http, http_method, {method})"]
        for path in AUTH_PATHS:
            url = self.auth.url(path, userinfo)
            assert '"' not in url and "\\" not in url
            terms.append(f'application:set_env(rabbitmq_auth_backend_http, {path}_path, "{url}")')
        done = self.ctl("eval", ", ".join(terms) + ", ok.")
        assert done.returncode == 0 and done.stdout.strip() == "ok", done
        self.http_backend = (method, userinfo)

    def start(self) -> None:
        began = time.monotonic()
        with open(self.root / "stdout.log", "ab") as out:
            self.proc = subprocess.Popen([self.server_script], env=self.env, cwd=self.root, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        deadline = began + START_SECONDS
        while not _mqtt_probe(self.mqtt_port):
            if self.proc.poll() is not None:
                raise AssertionError(f"rabbitmq-server exited ({self.proc.returncode}):\n{self.log_text()[-4000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"RabbitMQ did not accept MQTT in {START_SECONDS}s:\n{self.log_text()[-4000:]}")
            time.sleep(0.2)
        self.startup_seconds = time.monotonic() - began

    def stop(self) -> None:
        """``rabbitmqctl stop``; then SIGTERM and SIGKILL to the node's own process group if needed."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.ctl("stop")
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                self.proc.wait(timeout=STOP_SECONDS)
                break
            except subprocess.TimeoutExpired:
                # start_new_session made the node the leader of a group of its own.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, sig)
        self.proc = None


@contextlib.contextmanager
def private_rabbitmq(*, backends: Sequence[str] = ("http",), relay: AuthRelay | None = None,
                     userinfo: str | None = None, http_method: str = "post", extra_conf: str = "",
                     root: Path | None = None) -> Iterator[RabbitNode]:
    """A started node whose http backend paths point at ``relay`` (``node.auth``); removed on the way out.

    ``userinfo`` ("user:password") goes into each backend URL, which RabbitMQ's
    HTTP client turns into a Basic Authorization header.
    """
    require_rabbitmq()
    own_relay = relay is None
    relay = relay or AuthRelay()
    own_root = root is None
    root = Path(tempfile.mkdtemp(prefix="pkitest-rabbit-")) if own_root else root
    paths = {p: relay.url(p, userinfo) for p in AUTH_PATHS}
    node = RabbitNode(root, lambda n: rabbitmq_conf(
        amqp_port=n.amqp_port, mqtt_port=n.mqtt_port, backends=backends, http_paths=paths,
        http_method=http_method, default_user=n.admin_user, default_pass=n.admin_password, extra=extra_conf))
    node.auth = relay
    node.http_backend = (http_method, userinfo)
    try:
        node.start()
        cookie = node.ctl("eval", "erlang:get_cookie().")
        assert cookie.stdout.strip() == f"'{node.cookie}'", f"the node's cookie is not its own: {cookie}"
        yield node
    finally:
        node.stop()
        if own_relay:
            relay.close()
        if own_root:
            shutil.rmtree(root, ignore_errors=True)


# -- fixtures (tests/conftest.py imports them, so that the whole session shares one node) ----------------


@pytest.fixture(scope="session")
def _rabbitmq_session() -> Iterator[RabbitNode]:
    with private_rabbitmq() as node:
        yield node


@pytest.fixture
def rabbitmq(_rabbitmq_session) -> Iterator[RabbitNode]:
    """The session's node (auth_backends = http only, POST), its relay reset to deny all for this test."""
    node = _rabbitmq_session
    node.auth.reset()
    yield node
    node.auth.reset()
    if node.http_backend != ("post", None):
        node.point_http_backend()


@pytest.fixture
def rabbitmq_auth(rabbitmq) -> AuthRelay:
    """The relay of the session's node: set ``.decide`` or call ``.forward_to(url)``; read ``.requests``."""
    return rabbitmq.auth
