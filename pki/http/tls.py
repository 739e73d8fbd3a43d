"""TLS for ``pki serve``: the client certificate in ``scope["extensions"]["tls"]``.

uvicorn 0.54 does not implement the ASGI TLS extension (asgiref
``specs/tls.rst``; Kludex/uvicorn #3132 and #3133 are open), so the
application never sees the client certificate.  These protocol classes fill
it in, as that spec says, for each connection: once the handshake is done
(asyncio calls ``connection_made`` after it), the transport's ``ssl_object``
gives the peer certificate, and every request on the connection gets the
same ``tls`` dictionary.  Only the fields EST needs and the spec defines are
set: ``client_cert_chain`` (PEM strings, leaf first: the stdlib hands out the
leaf only), ``client_cert_name``, ``client_cert_error`` (None: the handshake
verified it), ``tls_version`` and ``cipher_suite``.

The certificate's validity period is *not* checked in the handshake
(``X509_V_FLAG_NO_CHECK_TIME``): EST decides whether an expired certificate
may still renew (a CA's window after expiry, RFC 7030 leaves it to policy),
and checks the time itself (:mod:`pki.services.est`).  The chain to
``--tls-client-ca`` and the proof of the private key are the handshake's.
"""

from __future__ import annotations

import ssl

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["TlsH11Protocol", "protocol_class", "ssl_context_factory", "NO_CHECK_TIME"]

#: OpenSSL's X509_V_FLAG_NO_CHECK_TIME (openssl/x509_vfy.h); Python's ssl module has no name for it.
NO_CHECK_TIME = 0x200000
_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def tls_extension(ssl_object) -> dict:
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    chain = [ssl.DER_cert_to_PEM_cert(der)] if der else []
    name = None
    if der:
        subject = ssl_object.getpeercert().get("subject", ())
        name = ",".join(f"{k}={v}" for rdn in reversed(subject) for k, v in rdn)
    cipher = ssl_object.cipher() if ssl_object is not None else None
    return {"server_cert": None, "client_cert_chain": chain, "client_cert_name": name, "client_cert_error": None,
            "tls_version": _TLS_VERSIONS.get(ssl_object.version()) if ssl_object is not None else None,
            "cipher_suite": None, "cipher_name": cipher[0] if cipher else None}


class _TlsMixin:
    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return
        ext = tls_extension(ssl_object)
        inner = self.app  # type: ignore[has-type]

        async def app(scope, receive, send):
            if scope["type"] in ("http", "websocket"):
                scope.setdefault("extensions", {})["tls"] = ext
            await inner(scope, receive, send)

        self.app = app


class TlsH11Protocol(_TlsMixin, H11Protocol):
    pass


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class TlsHttpToolsProtocol(_TlsMixin, HttpToolsProtocol):
        pass

    _DEFAULT = "pki.http.tls:TlsHttpToolsProtocol"
except ImportError:  # httptools is optional for uvicorn
    _DEFAULT = "pki.http.tls:TlsH11Protocol"


def protocol_class() -> str:
    """The import path uvicorn takes as ``http=`` (a string: worker processes import it themselves)."""
    return _DEFAULT


def ssl_context_factory(config, default_factory) -> ssl.SSLContext:
    """uvicorn's context, with client certificates asked for (not required) and their time left to EST."""
    context = default_factory()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if config.ssl_ca_certs:
        context.verify_mode = ssl.CERT_OPTIONAL
        context.verify_flags = context.verify_flags | NO_CHECK_TIME
    return context
