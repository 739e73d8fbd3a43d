"""How a command names one device certificate: ``SN --ca SN``, ``--client-id ID`` or ``--fingerprint F``.

:func:`device_ref_options` is the one decorator for it (show, activate, deactivate, revoke; apply it
to any other command on one device): the command receives ``ref``, a dict for :func:`resolve`, or
with ``required=False``, None when nothing was given, or only ``--ca`` (a command with another input,
such as ``revoke --from``, checks that).
"""

from __future__ import annotations

import functools

import click

from . import backend

__all__ = ["device_ref_options", "resolve"]


def device_ref_options(fn=None, *, required: bool = True):
    """Add ``[SN] --ca --client-id --fingerprint``; pass them on as ``ref`` (exactly one way given)."""

    def decorate(fn):
        @click.argument("sn", required=False)
        @click.option("--ca", "ca_sn", metavar="SN",
                      help="The issuing CA (serial or fingerprint): with SN, or to narrow --client-id.")
        @click.option("--client-id", metavar="ID",
                      help="The device's client id: its ACTIVE certificate (an error lists several).")
        @click.option("--fingerprint", metavar="F", help="The certificate's SHA-256 fingerprint.")
        @functools.wraps(fn)
        def wrapper(*args, sn, ca_sn, client_id, fingerprint, **kwargs):
            given = [name for name, value in (("SN", sn), ("--client-id", client_id), ("--fingerprint", fingerprint))
                     if value is not None]
            if len(given) > 1:
                raise click.UsageError(f"{' and '.join(given)}: name the device one way only")
            if not given:
                if required:
                    raise click.UsageError("name the device: SN --ca CA, --client-id ID or --fingerprint F")
                kwargs["ref"] = None if ca_sn is None else {"ca": ca_sn, "sn": None, "client_id": None,
                                                             "fingerprint": None}
                return fn(*args, **kwargs)
            if sn is not None and ca_sn is None:
                raise click.UsageError("a device serial needs --ca")
            kwargs["ref"] = {"ca": ca_sn, "sn": sn, "client_id": client_id, "fingerprint": fingerprint}
            return fn(*args, **kwargs)

        return wrapper

    return decorate(fn) if fn is not None else decorate


def resolve(state, ref: dict) -> dict:
    """``{"ca", "sn"}`` for the (ca, sn) operations, on the local store or the server."""
    found = backend.resolve_device(state, **ref)
    return {"ca": found["ca_sn"], "sn": found["sn"]}
