"""A private mosquitto for a test: its own config and log in a directory, a free loopback port.

    with private_mosquitto(tmp_path, "password_file /x/passwords\\nallow_anonymous false\\n") as broker:
        connect(broker.port, ...)
        ... rewrite /x/passwords ...
        broker.reload()            # SIGHUP; returns once mosquitto has logged the reload

The snippet is any mosquitto.conf text (password_file, acl_file, TLS options).
Unless it has its own ``listener`` line, ``listener PORT 127.0.0.1`` is put
first, so that listener options in the snippet apply to it. What every test
broker needs is appended: no persistence, everything logged to stderr (which
goes to ``broker.log``), and ``user`` = the current user, because mosquitto
started as root otherwise switches to the user "mosquitto", which cannot read
the test's files (mosquitto.conf(5), "user").

`mosquitto_passwd_file` writes a password file with Debian's own
``mosquitto_passwd -b`` (mosquitto_passwd(1)), an independent judge of the
format.
"""

from __future__ import annotations

import contextlib
import getpass
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.support import skip_or_fail
from tests.support.http_app import free_port

__all__ = ["Mosquitto", "mosquitto_passwd_file", "private_mosquitto", "require_mosquitto"]

#: Bounds only so that a wedged process cannot hang the run; nothing asserts on time.
WAIT_SECONDS = 30

_BASE = ("persistence false\nlog_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n"
         "log_type information\n")


def require_mosquitto() -> None:
    """Skip (developer machine) or fail (CI=true) when mosquitto or mosquitto_passwd is missing."""
    for tool in ("mosquitto", "mosquitto_passwd"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            skip_or_fail(f"{tool} is not installed")


def _tool(name: str) -> str:
    # Debian installs the broker in /usr/sbin, which a non-root PATH may lack.
    return shutil.which(name) or str(Path("/usr/sbin", name))


class Mosquitto:
    """One mosquitto process: ``start``, ``reload`` (SIGHUP), ``restart``, ``stop``."""

    def __init__(self, workdir: Path, snippet: str, *, port: int | None = None,
                 log: Path | None = None) -> None:
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.conf = self.workdir / "mosquitto-test.conf"
        self.log = log or self.workdir / "mosquitto.log"
        listener = "" if re.search(r"^\s*listener\s", snippet, re.M) else f"listener {self.port} 127.0.0.1\n"
        self.conf.write_text(f"{listener}{snippet.rstrip()}\nuser {getpass.getuser()}\n{_BASE}")
        self.proc: subprocess.Popen | None = None
        self._offset = 0
        self._log_fh = None

    def start(self) -> None:
        self._offset = self.log.stat().st_size if self.log.exists() else 0
        self._log_fh = open(self.log, "ab")
        self.proc = subprocess.Popen([_tool("mosquitto"), "-c", str(self.conf)], stdout=self._log_fh,
                                     stderr=subprocess.STDOUT)
        # mosquitto logs "mosquitto version X running" once its listeners are open.
        self._wait_for(b" running", "start")

    def log_since_start(self) -> str:
        return self.log.read_bytes()[self._offset:].decode(errors="replace")

    def _wait_for(self, marker: bytes, what: str) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while marker not in self.log.read_bytes()[self._offset:]:
            if self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited ({self.proc.returncode}):\n{self.log.read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"mosquitto did not {what}:\n{self.log.read_text()}")
            time.sleep(0.05)

    def reload(self) -> None:
        """SIGHUP, then wait for mosquitto's "Reloading config." line.

        mosquitto handles the signal in its single-threaded main loop: it logs
        that line and then rereads the config, password and ACL files before it
        serves any socket again, so a client that connects after the line is
        checked against the new files.
        """
        self._offset = self.log.stat().st_size
        self.proc.send_signal(signal.SIGHUP)
        self._wait_for(b"Reloading config.", "reload")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def private_mosquitto(workdir: Path, snippet: str = "allow_anonymous true\n", *,
                      port: int | None = None) -> Iterator[Mosquitto]:
    """A started `Mosquitto`, stopped on the way out."""
    require_mosquitto()
    broker = Mosquitto(workdir, snippet, port=port)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def mosquitto_passwd_file(path: Path, users: Mapping[str, str]) -> Path:
    """A password file made by ``mosquitto_passwd -b`` for each (username, password)."""
    path.write_text("")
    for username, password in users.items():
        subprocess.run([_tool("mosquitto_passwd"), "-b", str(path), username, password], check=True,
                       capture_output=True, timeout=WAIT_SECONDS)
    return path
