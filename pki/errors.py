"""The one error hierarchy of the project.

Every error a user can meet is a :class:`PkiError` with a stable string
``code`` (part of the interface: scripts match on it) and a message that says
what to do.  Each error belongs to one *family*; front ends map families, not
individual classes, to an exit code or an HTTP status, in one table each.

Messages never contain key material or secrets.
"""

from __future__ import annotations

import errno
from typing import Any, ClassVar

__all__ = [
    "PkiError",
    "InvalidInput",
    "NotFound",
    "Conflict",
    "InvalidState",
    "PermissionDenied",
    "ConfigError",
    "StoreError",
    "Unauthenticated",
    "RateLimited",
    "InternalError",
    "ServerUnreachable",
    "FAMILIES",
    "ERROR_CODES",
    "family_of",
    "io_error",
]


class PkiError(Exception):
    """Base of every error the project raises on purpose.

    ``code`` is stable; ``message`` is for people; ``data`` carries the
    details a machine may want (never secrets).
    """

    family: ClassVar[str] = "internal"
    default_code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, **data: Any) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.data = data

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "family": self.family, "message": self.message, **self.data}


class InvalidInput(PkiError):
    """The request itself is wrong: bad encoding, failed checks, bad values."""

    family = "invalid_input"
    default_code = "invalid_input"


class NotFound(PkiError):
    family = "not_found"
    default_code = "not_found"


class Conflict(PkiError):
    """The request collides with what exists (duplicate, already used)."""

    family = "conflict"
    default_code = "conflict"


class InvalidState(PkiError):
    """The target exists but its state forbids the operation (inactive CA...)."""

    family = "invalid_state"
    default_code = "invalid_state"


class PermissionDenied(PkiError):
    family = "permission_denied"
    default_code = "permission_denied"


class ConfigError(PkiError):
    """The installation is not usable as configured (no schema, bad key file)."""

    family = "config"
    default_code = "config_error"


class StoreError(PkiError):
    """The database failed or is unreachable; nothing was changed."""

    family = "store"
    default_code = "store_error"


class Unauthenticated(PkiError):
    """The caller could not be identified (no or a bad request signature)."""

    family = "unauthenticated"
    default_code = "unauthenticated"


class RateLimited(PkiError):
    """Too many requests for one access key; ``retry_after`` says when to come back."""

    family = "rate_limited"
    default_code = "rate_limited"


class InternalError(PkiError):
    family = "internal"
    default_code = "internal_error"


class ServerUnreachable(StoreError):
    """No (usable) answer from the server: in remote mode the server is the store, hence the family."""

    default_code = "server_unreachable"


#: Every family, in the order front ends document them.
FAMILIES: tuple[type[PkiError], ...] = (
    InvalidInput,
    NotFound,
    Conflict,
    InvalidState,
    PermissionDenied,
    ConfigError,
    StoreError,
    Unauthenticated,
    RateLimited,
    InternalError,
)


def _codes(family: type[PkiError], *codes: str) -> dict[str, str]:
    return {code: family.family for code in codes}


#: The one registry of error codes: every code any module raises, with its family.  Front ends
#: derive what they show from the family (an exit code, an HTTP status); tests/test_errors.py
#: checks that every code raised in pki/ is here, raised with its family, and in the README.
ERROR_CODES: dict[str, str] = {
    **_codes(
        InvalidInput, "invalid_input",
        # reading input: PEM/DER, sizes, counts (pki/x509/parse.py, crl.py, ocsp.py)
        "empty_input", "invalid_pem", "wrong_pem_label", "invalid_der", "trailing_data", "multiple_certificates",
        "input_too_large", "too_many_items", "invalid_certificate", "invalid_csr", "csr_bad_signature",
        "invalid_private_key", "key_not_encrypted", "key_password", "invalid_crl", "ocsp_malformed_request",
        "invalid_extension", "invalid_subject",
        "request_too_large", "invalid_request", "method_not_allowed", "invalid_forwarded_for",
        # certificate checks (pki/x509/checks.py)
        "not_a_ca", "ca_missing_key_cert_sign", "weak_key", "weak_signature_algorithm", "bad_self_signature",
        "unknown_critical_extension", "invalid_serial", "chain_broken", "chain_incomplete", "chain_unexpected",
        "chain_verification_failed", "verification_wrong_signer", "verification_code_mismatch",
        "verification_is_ca_certificate", "invalid_register_code", "key_mismatch", "responder_key_mismatch",
        "leaf_is_ca", "leaf_missing_client_auth", "invalid_san", "missing_client_id", "validity_exceeds_ca",
        "validity_too_long", "invalid_validity", "invalid_path_length", "unsupported_key_type",
        "pkcs12_password_required", "certificate_bad_signature", "ca_basic_constraints_not_critical",
        "chain_path_length_exceeded", "chain_repeated_certificate",
        # CRLs
        "crl_bad_signature", "crl_missing_next_update", "crl_missing_number", "crl_not_complete",
        "crl_not_yet_valid", "crl_stale", "crl_wrong_issuer", "crl_missing_entries", "crl_number_not_increasing", "crl_number_too_large",
        "crl_request_wrong_ca", "invalid_crl_lifetime", "invalid_crl_request", "invalid_revocation_reason",
        # values and names (pki/ids.py, paging)
        "invalid_client_id", "invalid_name", "invalid_user_name", "invalid_policy_name", "invalid_description",
        "invalid_fingerprint", "invalid_duration", "invalid_time", "invalid_ttl", "invalid_grace",
        "invalid_clock_skew", "invalid_cursor", "invalid_limit", "invalid_status", "invalid_result",
        "invalid_keep", "invalid_port", "invalid_head_hash", "invalid_format", "invalid_workers", "invalid_batch_size",
        # access policies
        "invalid_policy", "invalid_resource", "policy_pattern_too_long", "unknown_action", "unknown_operation", "system_policy",
        # provisioning
        "manifest_empty", "manifest_unreadable", "manifest_invalid_row", "manifest_duplicate_client_id",
        "provision_out_mismatch", "provision_key_file_unreadable",
        # the local filesystem (the CLI's OSError)
        "io_error",
        # the broker data plane: topics, permission rules, mosquitto files (pki/dataplane)
        "invalid_topic_filter", "invalid_topic", "invalid_permission", "invalid_priority", "invalid_cidr",
        "invalid_qos", "invalid_mqtt_action", "invalid_mosquitto_username", "invalid_mosquitto_password",
        "invalid_iterations", "invalid_salt",
        # naming one device certificate by client id (pki/services/device_lookup.py)
        "ambiguous_client_id",
        # the broker data plane's management (pki/services/dataplane)
        "invalid_username", "invalid_block",
        # key custody and master-key rotation (pki/keys, pki/services/custody.py, master_keys.py)
        "unsupported_custody", "invalid_custody", "master_key_unchanged", "master_key_file_not_found",
        # the broker hooks (pki/http/broker.py)
        "invalid_hook_request",
        # broker tokens (pki/services/tokens)
        "invalid_token_id", "invalid_token_algorithm",
        # certificate lifecycle and EST (pki/services/renewal.py, enrollment.py, est.py)
        "invalid_est_label", "invalid_base64", "est_subject_mismatch",
    ),
    **_codes(
        NotFound, "not_found", "ca_not_found", "device_not_found", "issuer_not_registered", "crl_not_available",
        "secret_not_found", "group_not_found", "user_not_found", "access_key_not_found", "policy_not_found",
        "policy_not_attached", "route_not_found", "identity_not_found", "permission_not_found", "block_not_found",
        "hook_token_not_found", "token_not_found", "ca_request_not_found",
        "est_ca_not_found",
    ),
    **_codes(
        Conflict, "conflict", "conflicting_change", "register_code_used", "ca_already_registered",
        "device_already_registered", "device_serial_clash", "secret_exists", "group_exists", "user_exists",
        "policy_exists", "provision_running", "identity_exists", "block_exists", "hook_token_exists",
        "master_key_rotation_running",
        "device_already_renewed", "est_label_exists", "claim_used",
    ),
    **_codes(
        InvalidState, "invalid_state", "register_code_expired", "ca_has_devices", "ca_inactive", "ca_not_managed",
        "ca_managed_crl", "ca_expired", "ca_not_yet_valid", "path_length_exceeded", "device_revoked",
        "device_still_valid", "crl_missing", "group_inactive", "member_inactive", "policy_in_use",
        "access_key_limit", "publish_in_progress", "publish_not_configured", "provision_key_mismatch",
        "provision_stray_key_file", "audit_chain_broken", "token_not_active",
        "device_inactive", "ca_bootstrap_only", "est_verify_failed",
    ),
    **_codes(
        PermissionDenied, "permission_denied", "access_denied", "authentication_failed", "invalid_access_key",
        "console_csrf_invalid",
        "est_bootstrap_only", "est_wrong_ca", "est_wrong_client_id", "claim_exhausted", "claim_client_id_prefix",
        "est_refused",
    ),
    **_codes(
        ConfigError, "config_error", "invalid_config", "store_not_initialized", "store_outdated",
        "unsupported_database", "master_key_missing", "master_key_exists", "master_key_insecure",
        "master_key_invalid", "master_key_unreadable", "key_unseal_failed", "artifacts_dir_invalid",
        "reload_failed", "local_only", "missing_credentials", "invalid_profile", "profile_insecure",
        "profile_unreadable",
        # key custody: the master key a row names, and PKCS#11 tokens (pki/keys/pkcs11.py)
        "pkcs11_module_unavailable", "pkcs11_token_missing", "pkcs11_pin_incorrect",
        "pkcs11_pin_missing", "pkcs11_pin_insecure", "pkcs11_key_missing", "pkcs11_error",
    ),
    **_codes(
        StoreError, "store_error", "store_unavailable", "store_busy", "disk_full", "io_failed", "provision_flush_failed", "server_unreachable",
        "bad_server_response",
    ),
    **_codes(
        Unauthenticated, "unauthenticated", "signature_missing", "signature_invalid", "signature_expired",
        "nonce_replayed", "hook_token_missing", "hook_token_invalid", "metrics_token_invalid",
        "console_signin_failed", "console_session_expired",
        "est_unauthenticated", "est_certificate_invalid", "est_certificate_expired", "claim_invalid", "claim_expired",
    ),
    **_codes(RateLimited, "rate_limited"),
    **_codes(InternalError, "internal_error", "key_corrupt", "key_cannot_sign"),
}


def io_error(exc: OSError) -> PkiError:
    """An OSError from the local filesystem as the project's error, naming the path when it is known.

    A full disk or a failing device is the store's side (nothing was changed, retry after fixing it);
    anything else (no such file, permission denied) is about the path the user gave.
    """
    path = exc.filename if isinstance(exc.filename, str) else None
    where = f" ({path})" if path else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(f"the disk is full{where}; free space there and retry", code="disk_full", path=path)
    if exc.errno == errno.EIO:
        return StoreError(f"the device failed to read or write{where} (EIO); check it and retry",
                          code="io_failed", path=path)
    return InvalidInput(f"{exc.strerror or exc}{where}", code="io_error", path=path)


def family_of(code: str, default: str = "internal") -> str:
    """The family of a registered code (``default`` for a code this version does not know)."""
    return ERROR_CODES.get(code, default)
