"""`repositoryPublicKey`: the SSH public key ARM shows for every Git-sourced Flux configuration.

The fluxConfigurations spec describes it as the "Public Key associated with this fluxConfiguration
(either generated within the cluster or provided by the user)", and its 2025-04-01 examples show an
`ssh-rsa` key for Git sources reached over HTTPS too (`GetFluxConfiguration.json` and
`CreateFluxConfigurationWithProvider.json`, both `https://` URLs), while a Bucket source shows `""`
(`CreateFluxConfigurationWithBucket.json`). A client that compares what Azure returns (drift detection)
must see the same: a key for every GitRepository configuration, whatever the URL scheme.

The lab never uses the key (its agents fetch over HTTPS), so it does not spend an RSA key generation
per configuration — at 10,000 panels that would take minutes. It derives, from the configuration's
uid, a blob in the exact `ssh-rsa` wire format (RFC 4253 6.6: string "ssh-rsa", mpint e, mpint n) with
a 2048-bit modulus: it parses as an RSA public key, is stable for the configuration's life and new
for a re-created one, but has no private half (listed in lab/README.md).
"""

from __future__ import annotations

import base64
import hashlib
import struct

# A 2048-bit modulus, as the examples' key has (their blob is 279 bytes: e = 65537, n = 257 bytes).
_MODULUS_BYTES = 256
_PUBLIC_EXPONENT = 65537


def _ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _mpint(value: bytes) -> bytes:
    """An SSH mpint of a positive number: a leading zero byte when the top bit is set."""
    stripped = value.lstrip(b"\0")
    if stripped and stripped[0] & 0x80:
        stripped = b"\0" + stripped
    return _ssh_string(stripped)


def repository_public_key(source_kind: str, uid: str) -> str:
    """The key ARM shows for a configuration of `source_kind`: `ssh-rsa …` for Git, else `""`."""
    if source_kind != "GitRepository":
        return ""
    blocks = (
        hashlib.sha256(f"{uid}/{counter}".encode()).digest()
        for counter in range(_MODULUS_BYTES // hashlib.sha256().digest_size)
    )
    modulus = bytearray(b"".join(blocks))
    modulus[0] |= 0x80  # a full 2048-bit number
    modulus[-1] |= 0x01  # odd, as an RSA modulus is
    exponent = _PUBLIC_EXPONENT.to_bytes(3, "big")
    blob = _ssh_string(b"ssh-rsa") + _mpint(exponent) + _mpint(bytes(modulus))
    return "ssh-rsa " + base64.b64encode(blob).decode()
