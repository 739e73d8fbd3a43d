"""A SoftHSM2 token for tests and benchmarks, initialised in a temporary directory.

SoftHSM2 reads ``SOFTHSM2_CONF`` when the PKCS#11 library is initialised, and
a process initialises it once, so one token directory serves the whole test
session (the fixture sets the variable before anything loads the module).
Tests that need a fresh process (a wrong PIN, a missing module) run the CLI
in a subprocess with the same environment.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import skip_or_fail

__all__ = ["MODULES", "PIN", "SoftHsm", "find_module", "init_token", "softhsm"]

#: Where Debian's softhsm2 puts the module.
MODULES = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
           "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so", "/usr/local/lib/softhsm/libsofthsm2.so")
PIN = "8642-" + "test"
SO_PIN = "97531-so"


@dataclass(frozen=True)
class SoftHsm:
    module: str
    label: str
    conf: Path
    pin: str = PIN

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "SOFTHSM2_CONF": str(self.conf), "PKI_PKCS11_PIN": self.pin, **extra}


def find_module() -> str | None:
    return next((m for m in MODULES if os.path.exists(m)), None)


def init_token(directory: Path, label: str) -> SoftHsm:
    """A config file and a fresh token ``label`` under ``directory`` (the caller sets SOFTHSM2_CONF)."""
    module, util = find_module(), shutil.which("softhsm2-util")
    if module is None or util is None:
        skip_or_fail("SoftHSM2 is not installed (Debian: apt-get install softhsm2)")
    try:
        import pkcs11  # noqa: F401
    except ImportError:
        skip_or_fail("python-pkcs11 is not installed")
    (directory / "tokens").mkdir(parents=True, exist_ok=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {directory / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    subprocess.run([util, "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", SO_PIN],
                   check=True, capture_output=True, env={**os.environ, "SOFTHSM2_CONF": str(conf)})
    return SoftHsm(module=module, label=label, conf=conf)


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory):
    """One SoftHSM2 token for the session, SOFTHSM2_CONF and PKI_PKCS11_PIN set in this process."""
    token = init_token(tmp_path_factory.mktemp("softhsm"), "pki-test-" + secrets.token_hex(3))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOFTHSM2_CONF", str(token.conf))
        mp.setenv("PKI_PKCS11_PIN", token.pin)
        yield token
