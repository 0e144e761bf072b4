"""The lab's certificate authority and its one server certificate.

The Key Vault SDK refuses plain http and ARM clients should see real TLS, so every emulated service
listens with a certificate for 127.0.0.1/localhost issued by a CA the lab creates in its state dir.
Clients trust it through `REQUESTS_CA_BUNDLE`/`SSL_CERT_FILE`/`GIT_SSL_CAINFO` (see `lab.json`'s env).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class LabTls:
    ca_bundle: Path
    server_context: ssl.SSLContext

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_bundle))


def create_tls(state_dir: Path) -> LabTls:
    """Create (or recreate) the CA and a server certificate for the loopback names."""
    ca = trustme.CA(organization_name="fluxfleet lab")
    cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
    ca_path = state_dir / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    # The bundle also goes into the chain so curl-like clients given only ca.pem can verify.
    cert_path = state_dir / "server.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert_path))
    return LabTls(ca_bundle=ca_path, server_context=context)
