"""Self-signed certificates for loopback TLS (the demo, tests): a certificate valid for localhost and 127.0.0.1."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path


def self_signed(hostnames: tuple[str, ...] = ("localhost",), ips: tuple[str, ...] = ("127.0.0.1", "::1"),
                days: int = 2) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) of a fresh EC P-256 self-signed certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0] if hostnames else "onda")])
    now = datetime.datetime.now(datetime.timezone.utc)
    san = [x509.DNSName(h) for h in hostnames] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert_pem, key_pem


def write_self_signed(directory: str | Path, stem: str = "server") -> tuple[Path, Path]:
    """Write ``stem.crt`` and ``stem.key`` (0600) into ``directory``; returns their paths."""
    import os

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cert_pem, key_pem = self_signed()
    cert, key = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert.write_bytes(cert_pem)
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    return cert, key
