"""The well-known CA store: the roots a v2 HTTP settings without trusted roots trusts.

The gateway's own store is not published; the Mozilla roots that certifi ships stand in for it
(docs/sources.md#well-known-ca), or the PEM file named by WELL_KNOWN_CA_BUNDLE. Read once per
path and process (the file is a few hundred kilobytes and rarely changes).
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

from shared.common.errors import InputError
from shared.core.certs import CertInfo, cert_info, load_certificates

_CACHE: dict[str, tuple[CertInfo, ...]] = {}
_LOCK = threading.Lock()


def default_bundle() -> str:
    import certifi  # deferred: only this loader needs it

    return str(certifi.where())


def load_well_known(path: str | None = None) -> tuple[CertInfo, ...]:
    """The CA certificates of `path` (default: certifi's bundle), each a trust anchor as it stands
    (a few Mozilla roots do not verify their own signature under OpenSSL 3 rules, yet anchor);
    InputError when the file cannot be read or holds no CA certificate."""
    where = (path or "").strip() or default_bundle()
    with _LOCK:
        cached = _CACHE.get(where)
    if cached is not None:
        return cached
    try:
        data = Path(where).read_bytes()
    except OSError as exc:
        raise InputError(f"WELL_KNOWN_CA_BUNDLE: cannot read {where}: {exc.strerror}") from None
    roots = []
    with warnings.catch_warnings():
        # Some long-lived roots carry a non-positive serial number: cryptography warns, still reads.
        warnings.simplefilter("ignore")
        infos = []
        for der in load_certificates(data):
            try:
                infos.append(cert_info(der))
            except InputError:
                continue  # one odd entry does not spoil the store
    for info in infos:
        if info.is_ca:
            roots.append(info)
    if not roots:
        raise InputError(f"WELL_KNOWN_CA_BUNDLE: {where} holds no CA certificate")
    store = tuple(roots)
    with _LOCK:
        _CACHE[where] = store
    return store
