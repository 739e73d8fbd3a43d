"""`pki serve --workers 2`: the workers go when the supervisor is killed, so a restart gets the port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.http_app import _wait_ready, free_port
from pki.config import Settings
from pki.services.setup import initialise


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_die_with_a_killed_supervisor(tmp_path):
    workers: set[int] = set()
    settings = Settings.load(home=tmp_path / "home", environ={})
    initialise(settings)
    port = free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, "PKI_HOME": str(settings.home), "PKI_DATABASE_URL": settings.database_url,
           "PKI_MASTER_KEY_FILE": str(settings.master_key_file)}
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "pki.cli.main", "serve", "--host", "127.0.0.1", "--port",
                                 str(port), "--workers", "2"], env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        _wait_ready(f"http://127.0.0.1:{port}", proc, log)
        workers = _children(proc.pid)
        assert len(workers) >= 2, "no worker processes found"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        for _ in range(200):  # a bound on waiting, not a timed assertion
            if not any(_alive(w) for w in workers):
                break
            time.sleep(0.05)
        assert not any(_alive(w) for w in workers), "a worker outlived its supervisor"
        with socket.socket() as s:  # what a restart needs
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
    finally:
        if proc.poll() is None:
            proc.kill()
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)
