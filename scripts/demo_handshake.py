"""The quickstart's last step: a real TLS handshake against the published files.

    python scripts/demo_handshake.py ARTIFACTS_DIR DEVICE_CERT DEVICE_KEY [DEVICE_CERT DEVICE_KEY ...]

Starts a TLS server on 127.0.0.1 (an ephemeral port) that verifies client
certificates exactly as mosquitto's `require_certificate` + `crlfile` does:
trust from ARTIFACTS_DIR/current/ca-bundle.pem, CRLs from crl.pem, CRL check on
the leaf.  Each device then connects with its certificate; the script prints
whether the server accepted it and, if not, why.  Exit code 0.  Only Python's
ssl module is needed (no openssl CLI, no broker).
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import socket
import ssl
import sys
import tempfile
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _server_identity(directory: Path) -> tuple[Path, Path]:
    """The broker's own certificate: not this PKI's business, so a throwaway one."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = _dt.datetime.now(_dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.pem", directory / "server.key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def main(argv: list[str]) -> int:
    if len(argv) < 3 or len(argv) % 2 != 1:
        print(__doc__, file=sys.stderr)
        return 2
    current = Path(argv[0]) / "current"
    devices = [(Path(argv[i]), Path(argv[i + 1])) for i in range(1, len(argv), 2)]
    with tempfile.TemporaryDirectory() as tmp:
        server_cert, server_key = _server_identity(Path(tmp))
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(server_cert, server_key)
        server_ctx.verify_mode = ssl.CERT_REQUIRED
        server_ctx.load_verify_locations(cafile=current / "ca-bundle.pem")
        server_ctx.load_verify_locations(cafile=current / "crl.pem")
        server_ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF

        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        outcomes: list[str] = []

        def serve() -> None:
            for _ in devices:
                conn, _addr = listener.accept()
                try:
                    with server_ctx.wrap_socket(conn, server_side=True) as tls:
                        cn = dict(x[0] for x in tls.getpeercert()["subject"])["commonName"]
                        outcomes.append(f"accepted, client id {cn}")
                except ssl.SSLError as exc:
                    outcomes.append(f"refused: {exc.verify_message or exc.reason}")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        print(f"TLS server on 127.0.0.1:{port}, trusting {current}/ca-bundle.pem with CRL checks")
        for cert, key in devices:
            before = len(outcomes)
            client_ctx = ssl.create_default_context(cafile=server_cert)
            client_ctx.load_cert_chain(cert, key)
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                    with client_ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
                        tls.recv(1)  # TLS 1.3: the server's verdict arrives after the client's Finished
            except (ssl.SSLError, OSError):
                pass
            while len(outcomes) == before and thread.is_alive():
                thread.join(0.05)
            print(f"  {cert.name:32s} {outcomes[-1] if len(outcomes) > before else 'no answer'}")
        listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
