"""Shared by the HTTP tests: an app over a Context, an admin user, a signing client."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pki.client import Client
from pki.http import create_app
from pki.services import policies as policy_service
from pki.services import users as user_service

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def make_user(ctx, name: str, *policies: str):
    user = user_service.create_user(ctx, name)
    for policy in policies:
        policy_service.attach_policy(ctx, policy, user=name)
    return user


def plain_client(app) -> TestClient:
    return TestClient(app, raise_server_exceptions=False)


def signed_client(app_or_tc, user) -> Client:
    tc = app_or_tc if isinstance(app_or_tc, TestClient) else plain_client(app_or_tc)
    return Client("http://testserver", user.access_key_id, user.access_key_secret, http=tc)


def app_for(ctx, **kw):
    return create_app(lambda: ctx, **kw)


def csr_pem(cn: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, log: Path) -> None:
    for _ in range(300):  # a bound on waiting for start-up, not a timed assertion
        if proc.poll() is not None:
            pytest.fail(f"pki serve exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/openapi.json", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail(f"pki serve did not start: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def serve_process(settings, log: Path, *args: str):
    """A real `pki serve` (uvicorn, its own process) on a free loopback port; yields its URL."""
    port = free_port()
    env = {**os.environ, "PKI_HOME": str(settings.home), "PKI_DATABASE_URL": settings.database_url,
           "PKI_MASTER_KEY_FILE": str(settings.master_key_file)}
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pki.cli.main", "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            env=env, stdout=subprocess.DEVNULL, stderr=err)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
