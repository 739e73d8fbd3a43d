"""PKCS#11 custody: CA keys made and used on a token (an HSM; SoftHSM2 in tests).

Library: python-pkcs11 (a Cython binding with a Pythonic object model and
typed exceptions per CKR_ code, which maps one to one onto our error codes).

How signing works: :class:`HsmEcPrivateKey` is an
``ec.EllipticCurvePrivateKey`` whose ``sign()`` hashes the data itself and
asks the token for a raw ``CKM_ECDSA`` signature over the digest (SoftHSM2
offers no ``CKM_ECDSA_SHA256``), then DER-encodes the ``r || s`` it returns
(PKCS#11 v2.40 section 2.3.1 gives the raw form, RFC 5480 the DER one).
cryptography's certificate, CRL and OCSP builders call ``sign()`` on any
such key, so every signing path goes through the token unchanged.

PKCS#11 sessions must not be shared between threads, and a forked child
must initialise the library again (PKCS#11 v2.40 section 5.4 and 6.6.1):
:class:`_Token` keeps one session per thread and re-initialises after a
fork.  The PIN comes from an environment variable or a 0600 file named in
the key's URI, read when a session logs in; it is never stored.
"""

from __future__ import annotations

import os
import stat
import threading
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote

from asn1crypto.core import OctetString
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from ..errors import ConfigError, InternalError, InvalidInput
from .custody import KeyHandle
from .software import SoftwareSigner
from .types import PublicKey, signature_hash_for

__all__ = ["DEFAULT_PIN_ENV", "HsmEcPrivateKey", "Pkcs11Custody", "Pkcs11Location", "Pkcs11Signer"]

#: Where the PIN is read from when neither an environment variable nor a file is named.
DEFAULT_PIN_ENV = "PKI_PKCS11_PIN"
_CURVES = {"ec-p256": ("secp256r1", ec.SECP256R1), "ec-p384": ("secp384r1", ec.SECP384R1)}
_MAX_PIN_FILE = 4096


@dataclass(frozen=True)
class Pkcs11Location:
    """A token and where its PIN comes from; with an object label, one key (RFC 7512 URI)."""

    module: str
    token_label: str
    pin_env: str | None = None
    pin_file: str | None = None
    object_label: str | None = None

    def uri(self) -> str:
        path = [f"token={_q(self.token_label)}"]
        if self.object_label is not None:
            path += [f"object={_q(self.object_label)}", "type=private"]
        query = [f"module-path={quote(self.module, safe='/')}"]
        if self.pin_file is not None:
            query.append(f"pin-source={quote('file:' + self.pin_file, safe='/:')}")
        if self.pin_env is not None:
            # RFC 7512 section 2.3: vendor attributes start with "x-".
            query.append(f"x-pin-env={_q(self.pin_env)}")
        return "pkcs11:" + ";".join(path) + "?" + "&".join(query)

    @classmethod
    def parse(cls, uri: str) -> Pkcs11Location:
        if not isinstance(uri, str) or not uri.startswith("pkcs11:"):
            raise ConfigError(f"{uri!r} is not a PKCS#11 URI", code="pkcs11_error")
        path, _, query = uri[len("pkcs11:"):].partition("?")
        attrs = dict(p.split("=", 1) for p in path.split(";") if "=" in p)
        params = dict(parse_qsl(query))
        pin_source = params.get("pin-source")
        return cls(
            module=params.get("module-path", ""), token_label=unquote(attrs.get("token", "")),
            pin_env=params.get("x-pin-env"),
            pin_file=pin_source[len("file:"):] if pin_source and pin_source.startswith("file:") else None,
            object_label=unquote(attrs["object"]) if "object" in attrs else None,
        )

    def for_object(self, label: str) -> Pkcs11Location:
        return Pkcs11Location(self.module, self.token_label, self.pin_env, self.pin_file, label)


def _q(text: str) -> str:
    return quote(text, safe="")


def _pkcs11():
    try:
        import pkcs11
    except ImportError:  # pragma: no cover - a declared dependency
        raise ConfigError("python-pkcs11 is not installed; install device-pki with its dependencies",
                          code="pkcs11_module_unavailable") from None
    return pkcs11


def _read_pin(loc: Pkcs11Location) -> str:
    if loc.pin_file is not None:
        try:
            fd = os.open(loc.pin_file, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise ConfigError(f"cannot read the PKCS#11 PIN file {loc.pin_file}: {exc.strerror}",
                              code="pkcs11_pin_missing", path=loc.pin_file) from None
        with os.fdopen(fd, "rb") as f:
            mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
            if mode & 0o077:
                raise ConfigError(f"the PKCS#11 PIN file {loc.pin_file} is accessible by group or others "
                                  f"(mode {mode:04o}); run `chmod 600 {loc.pin_file}`",
                                  code="pkcs11_pin_insecure", path=loc.pin_file)
            pin = f.read(_MAX_PIN_FILE).decode("utf-8", errors="replace").rstrip("\r\n")
    else:
        var = loc.pin_env or DEFAULT_PIN_ENV
        pin = os.environ.get(var, "")
        if not pin:
            raise ConfigError(f"no PKCS#11 PIN: set the environment variable {var} for token "
                              f"{loc.token_label!r}", code="pkcs11_pin_missing", env=var)
    if not pin:
        raise ConfigError(f"the PKCS#11 PIN file {loc.pin_file} is empty", code="pkcs11_pin_missing")
    return pin


def _translate(exc: Exception, loc: Pkcs11Location) -> ConfigError:
    """A python-pkcs11 exception as our config-family error (never a traceback for the user)."""
    e = _pkcs11().exceptions
    where = f"token {loc.token_label!r} (module {loc.module})"
    if isinstance(exc, e.NoSuchToken | e.TokenNotPresent | e.DeviceRemoved | e.SlotIDInvalid):
        return ConfigError(f"no PKCS#11 {where} is present; check the token label and that the token is "
                           "initialised and plugged in", code="pkcs11_token_missing", token=loc.token_label)
    if isinstance(exc, e.PinIncorrect | e.PinInvalid | e.PinLenRange | e.PinExpired):
        return ConfigError(f"the PIN for {where} was refused; check the PIN variable or file",
                           code="pkcs11_pin_incorrect", token=loc.token_label)
    if isinstance(exc, e.PinLocked):
        return ConfigError(f"the PIN for {where} is locked after too many wrong PINs; the token's security "
                           "officer must unlock it", code="pkcs11_pin_incorrect", token=loc.token_label)
    if isinstance(exc, e.NoSuchKey | e.ObjectHandleInvalid | e.KeyHandleInvalid):
        return ConfigError(f"the key {loc.object_label!r} is not on {where}: it was deleted or the token was "
                           "replaced; restore it from the HSM's backup", code="pkcs11_key_missing",
                           token=loc.token_label, key_id=loc.object_label)
    if isinstance(exc, e.PKCS11Error) and "loading" in str(exc):
        return ConfigError(f"cannot load the PKCS#11 module {loc.module}; check the path (e.g. "
                           "/usr/lib/softhsm/libsofthsm2.so)", code="pkcs11_module_unavailable", module=loc.module)
    return ConfigError(f"the PKCS#11 {where} failed: {type(exc).__name__}", code="pkcs11_error",
                       token=loc.token_label)


#: module path -> the pid that last initialised it (see _Token._check_fork)
_lib_pid: dict[str, int] = {}


class _Token:
    """One token in this process: one session per thread, re-initialised after a fork."""

    _all: dict[tuple, _Token] = {}
    _guard = threading.Lock()

    def __init__(self, loc: Pkcs11Location) -> None:
        self.loc = loc
        self._pid = os.getpid()
        self._local = threading.local()
        self._lib = None
        self._token = None

    @classmethod
    def of(cls, loc: Pkcs11Location) -> _Token:
        key = (loc.module, loc.token_label, loc.pin_env, loc.pin_file)
        with cls._guard:
            token = cls._all.get(key)
            if token is None:
                token = cls._all[key] = cls(loc)
            return token

    def _check_fork(self) -> None:
        if self._pid != os.getpid():
            with self._guard:
                if self._pid != os.getpid():
                    # The parent's sessions are not ours (PKCS#11 v2.40 section 6.6.1).
                    if self._lib is not None and _lib_pid.get(self.loc.module) != os.getpid():
                        # Once per library and process: a second token on the same module
                        # must not finalize the sessions the first one just opened.
                        _lib_pid[self.loc.module] = os.getpid()
                        try:
                            self._lib.reinitialize()
                        except Exception:  # noqa: BLE001 - the next call reports a real failure
                            pass
                    self._local = threading.local()
                    self._token = None
                    self._pid = os.getpid()

    def session(self):
        self._check_fork()
        session = getattr(self._local, "session", None)
        if session is not None:
            return session
        p = _pkcs11()
        try:
            if not os.path.exists(self.loc.module):
                raise ConfigError(f"the PKCS#11 module {self.loc.module} does not exist; check the path (e.g. "
                                  "/usr/lib/softhsm/libsofthsm2.so)", code="pkcs11_module_unavailable",
                                  module=self.loc.module)
            if self._token is None:
                self._lib = p.lib(self.loc.module)
                _lib_pid.setdefault(self.loc.module, os.getpid())
                self._token = self._lib.get_token(token_label=self.loc.token_label)
            pin = _read_pin(self.loc)
            try:
                session = self._token.open(user_pin=pin, rw=True)
            except p.exceptions.UserAlreadyLoggedIn:
                # Login is per application, not per session: another thread's session logged us in.
                session = self._token.open(rw=True)
        except p.exceptions.PKCS11Error as exc:
            raise _translate(exc, self.loc) from None
        self._local.session = session
        self._local.keys = {}
        return session

    def private_key(self, label: str):
        self.session()
        obj = self._local.keys.get(label)
        if obj is None:
            p = _pkcs11()
            try:
                obj = self.session().get_key(object_class=p.ObjectClass.PRIVATE_KEY, label=label)
            except p.exceptions.PKCS11Error as exc:
                raise _translate(exc, self.loc.for_object(label)) from None
            self._local.keys[label] = obj
        return obj

    def sign_digest(self, label: str, digest: bytes) -> bytes:
        p = _pkcs11()
        key = self.private_key(label)
        try:
            return key.sign(digest, mechanism=p.Mechanism.ECDSA)
        except (p.exceptions.ObjectHandleInvalid, p.exceptions.KeyHandleInvalid) as exc:
            self._local.keys.pop(label, None)  # deleted under us: look it up again next time
            raise _translate(exc, self.loc.for_object(label)) from None
        except p.exceptions.PKCS11Error as exc:
            raise _translate(exc, self.loc.for_object(label)) from None


class HsmEcPrivateKey(ec.EllipticCurvePrivateKey):
    """An EC private key that stays on the token; only ``sign()`` and ``public_key()`` work."""

    def __init__(self, token: _Token, label: str, public: ec.EllipticCurvePublicKey) -> None:
        self._token, self._label, self._public = token, label, public
        self._size = (public.curve.key_size + 7) // 8

    def __repr__(self) -> str:
        return f"<HsmEcPrivateKey {self._label} on token {self._token.loc.token_label!r}>"

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.curve.key_size

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    def sign(self, data, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise InternalError("a token-held EC key signs with ECDSA only", code="key_cannot_sign")
        algorithm = signature_algorithm.algorithm
        if isinstance(algorithm, utils.Prehashed):
            digest = bytes(data)
        else:
            h = hashes.Hash(algorithm)
            h.update(bytes(data))
            digest = h.finalize()
        raw = self._token.sign_digest(self._label, digest)
        n = self._size
        return utils.encode_dss_signature(int.from_bytes(raw[:n], "big"), int.from_bytes(raw[n:], "big"))

    def _refuse(self, *_a, **_k):
        raise TypeError("this private key is held by a PKCS#11 token and cannot be exported or used for ECDH")

    exchange = private_numbers = private_bytes = _refuse

    def __copy__(self) -> HsmEcPrivateKey:
        return self

    def __deepcopy__(self, memo) -> HsmEcPrivateKey:
        return self


class Pkcs11Signer(SoftwareSigner):
    """The Signer over a token-held key: the same code paths, the key never in memory."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<Pkcs11Signer key_id={self.key_id!r} key_type={self.key_type!r}>"


class Pkcs11Custody:
    """Keys generated on one token: non-extractable, sensitive, labelled with the key id."""

    name = "pkcs11"

    def __init__(self, loc: Pkcs11Location) -> None:
        self.loc = Pkcs11Location(loc.module, loc.token_label, loc.pin_env, loc.pin_file)
        self._token = _Token.of(self.loc)

    @classmethod
    def for_uri(cls, uri: str | None) -> Pkcs11Custody:
        return cls(Pkcs11Location.parse(uri or ""))

    def __repr__(self) -> str:
        return f"<Pkcs11Custody token={self.loc.token_label!r}>"

    def check(self) -> None:
        """Open a session now (module, token, PIN), so a bad configuration fails before any change."""
        self._token.session()

    def new_key(self, key_type: str, *, key_id: str) -> tuple[Pkcs11Signer, KeyHandle]:
        if key_type not in _CURVES:
            raise InvalidInput(f"a PKCS#11 key must be one of {', '.join(_CURVES)}, not {key_type!r}",
                               code="unsupported_key_type")
        p = _pkcs11()
        from pkcs11.util.ec import encode_named_curve_parameters

        session = self._token.session()
        A = p.Attribute
        try:
            params = session.create_domain_parameters(
                p.KeyType.EC, {A.EC_PARAMS: encode_named_curve_parameters(_CURVES[key_type][0])}, local=True)
            pub, _priv = params.generate_keypair(
                store=True, label=key_id, id=key_id.encode("ascii"),
                public_template={A.VERIFY: True},
                private_template={A.EXTRACTABLE: False, A.SENSITIVE: True, A.SIGN: True, A.PRIVATE: True},
            )
            point = pub[A.EC_POINT]
        except p.exceptions.PKCS11Error as exc:
            raise _translate(exc, self.loc.for_object(key_id)) from None
        handle = KeyHandle("pkcs11", key_id, key_type, key_ref=self.loc.for_object(key_id).uri())
        public = _public_from_point(point, _CURVES[key_type][1]())
        return self._signer(handle, public), handle

    def signer(self, handle: KeyHandle) -> Pkcs11Signer:
        self._token.private_key(handle.key_id)  # "the key is gone" now, not at the first signature
        return self._signer(handle, self.public_key(handle))

    def _signer(self, handle: KeyHandle, public: ec.EllipticCurvePublicKey) -> Pkcs11Signer:
        key = HsmEcPrivateKey(self._token, handle.key_id, public)
        signature_hash_for(key)
        return Pkcs11Signer(key, key_id=handle.key_id)

    def public_key(self, handle: KeyHandle) -> PublicKey:
        p = _pkcs11()
        try:
            pub = self._token.session().get_key(object_class=p.ObjectClass.PUBLIC_KEY, label=handle.key_id)
            point = pub[p.Attribute.EC_POINT]
        except p.exceptions.PKCS11Error as exc:
            raise _translate(exc, self.loc.for_object(handle.key_id)) from None
        return _public_from_point(point, _CURVES[handle.key_type][1]())

    def attributes(self, handle: KeyHandle) -> dict:
        """The private key object's protection flags, as the token reports them."""
        p = _pkcs11()
        obj = self._token.private_key(handle.key_id)
        A = p.Attribute
        return {"extractable": bool(obj[A.EXTRACTABLE]), "sensitive": bool(obj[A.SENSITIVE]),
                "never_extractable": bool(obj[A.NEVER_EXTRACTABLE])}

    def describe(self, handle: KeyHandle) -> dict:
        return {"custody": "pkcs11", "uri": handle.key_ref, "token": self.loc.token_label}

    def destroy(self, handle: KeyHandle) -> None:
        """Remove both halves (a key made for a CA that was then refused)."""
        p = _pkcs11()
        session = self._token.session()
        for cls in (p.ObjectClass.PRIVATE_KEY, p.ObjectClass.PUBLIC_KEY):
            try:
                session.get_key(object_class=cls, label=handle.key_id).destroy()
            except p.exceptions.PKCS11Error:
                pass
        self._token._local.keys.pop(handle.key_id, None)


def _public_from_point(ec_point: bytes, curve: ec.EllipticCurve) -> ec.EllipticCurvePublicKey:
    # CKA_EC_POINT is the DER OCTET STRING around the X9.62 point (PKCS#11 v2.40 section 2.3.3).
    try:
        point = OctetString.load(bytes(ec_point)).native
    except ValueError:
        point = bytes(ec_point)  # some modules return the bare point
    return ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
