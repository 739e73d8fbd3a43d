#!/usr/bin/env bash
# The main job, end to end, on the embedded SQLite default: register a CA the
# customer owns (proof of possession), create a managed CA, provision a factory
# batch, revoke one device, publish the broker's files, and watch a real TLS
# handshake accept a good device and refuse the revoked one.
# Everything lands in ./demo (recreated each run).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e . 2>&1 \
    | grep -v "^WARNING: Location" || true

rm -rf demo && mkdir -p demo/customer
export PKI_HOME="$PWD/demo/.pki"
unset PKI_DATABASE_URL PKI_MASTER_KEY_FILE PKI_INSTANCE
pki() { .venv/bin/pki "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. Set up the data directory, schema and master key (SQLite under demo/.pki)"
pki init

step "2. The customer's own CA (made here for the demo; normally it already exists)"
.venv/bin/python - demo/customer <<'PY'
import datetime as dt, sys
from pathlib import Path
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

out = Path(sys.argv[1])
key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Acme Factory Root CA"),
                  x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme")])
now = dt.datetime.now(dt.timezone.utc)
usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                      data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                      encipher_only=False, decipher_only=False)
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256()))
(out / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
(out / "ca.key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
(out / "ca.key.pem").chmod(0o600)
print("wrote demo/customer/ca.pem and demo/customer/ca.key.pem")
PY

step "3. Ask for a register code (single use, expires in an hour)"
pki code new --json | tee demo/code.json
CODE=$(.venv/bin/python -c 'import json;print(json.load(open("demo/code.json"))["code"])')

step "4. Where the CA key lives: sign a verification certificate whose CN is the code"
pki ca verification-cert --ca-cert demo/customer/ca.pem --ca-key demo/customer/ca.key.pem \
    --code "$CODE" --out demo/customer/verification.pem

step "5. Register the CA with the proof of possession"
pki ca register --cert demo/customer/ca.pem --verification demo/customer/verification.pem --json \
    | tee demo/ca.json
SN=$(.venv/bin/python -c 'import json;print(json.load(open("demo/ca.json"))["sn"])')

step "6. The same code cannot be used twice (this error is expected)"
if pki ca register --cert demo/customer/ca.pem --verification demo/customer/verification.pem; then
    echo "unexpected: a reused code was accepted" >&2; exit 1
fi

step "7. Deactivate the CA (its devices would be locked out), then activate it again"
pki ca deactivate "$SN"
pki ca list
pki ca activate "$SN"
pki ca list

step "8. Create a managed CA: its key is generated here and sealed under the master key"
pki ca create --name "Acme Line 1 CA" --json | tee demo/line1.json
LINE=$(.venv/bin/python -c 'import json;print(json.load(open("demo/line1.json"))["sn"])')

step "9. Factory batch: keys generated here, certificates issued, files written (resumable)"
printf 'client_id\nsensor-0001\nsensor-0002\nsensor-0003\nsensor-0004\nsensor-0005\n' > demo/manifest.csv
pki device provision --ca "$LINE" --manifest demo/manifest.csv --out demo/factory
head -n 2 demo/factory/index.jsonl
pki device list --ca "$LINE"

step "10. The security team revokes sensor-0002 (its key leaked)"
REVOKED=$(.venv/bin/python -c 'import json
for line in open("demo/factory/index.jsonl"):
    row = json.loads(line)
    if row["client_id"] == "sensor-0002":
        print(row["sn"])')
pki device revoke "$REVOKED" --ca "$LINE" --reason keyCompromise

step "11. The customer's CA keeps its key: its CRL is signed offline, where the key lives, then uploaded"
pki crl request --ca "$SN" --out demo/customer/crl-request.json
pki crl sign --ca-cert demo/customer/ca.pem --ca-key demo/customer/ca.key.pem \
    --request demo/customer/crl-request.json --out demo/customer/crl.pem
pki crl upload --ca "$SN" demo/customer/crl.pem

step "12. Publish what the broker's TLS handshake reads (trust bundle, CRLs, mosquitto snippet)"
pki artifacts publish --out demo/broker
ls demo/broker/current
sed -n '1,20p' demo/broker/current/mosquitto.conf

step "13. A real TLS handshake with CRL checks, as mosquitto does it: one accepted, one refused"
.venv/bin/python scripts/demo_handshake.py demo/broker \
    demo/factory/devices/sensor-0001.crt.pem demo/factory/devices/sensor-0001.key.pem \
    demo/factory/devices/sensor-0002.crt.pem demo/factory/devices/sensor-0002.key.pem

printf '\nDone. The store is in demo/.pki; try: PKI_HOME=demo/.pki .venv/bin/pki device show --client-id sensor-0002\n'
