"""Tables, engine, repositories and migrations.  Never imports x509 or keys."""

# Imported to register their tables.
from . import access_models, artifact_models, dataplane_models, http_models, provision_models, secret_models  # noqa: F401
from . import token_models  # noqa: F401
from . import console_models  # noqa: F401
from . import key_models  # noqa: F401
from . import enrollment_models  # noqa: F401
from . import ca_request_models  # noqa: F401
from .engine import Store, head_revision, normalise_url, sqlite_url
from .models import CaCertificate, CustodyKey, DeviceCertificate, RegisterCode, DeviceStatus, Status, TokenKeyStatus, TokenStatus

__all__ = [
    "head_revision",
    "Store",
    "normalise_url",
    "sqlite_url",
    "Status",
    "DeviceStatus",
    "TokenStatus",
    "TokenKeyStatus",
    "CaCertificate",
    "CustodyKey",
    "DeviceCertificate",
    "RegisterCode",
]
