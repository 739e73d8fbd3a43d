"""Shared by the HTTP tests: an app over a Context, an admin user, a signing client."""

from __future__ import annotations

import warnings

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pki.client import Client
from pki.http import create_app
from pki.services import access

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def make_user(ctx, name: str, *policies: str):
    user = access.create_user(ctx, name)
    for policy in policies:
        access.attach_policy(ctx, policy, user=name)
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
