"""The server's certificate: a pair given with ``--certfile``/``--keyfile``, checked before
serving so that a bad one is one line (exit 4), or a throwaway one made by ``--self-signed``.

``cryptography`` is imported only here, and only when TLS is asked for: plain ``sseplay
serve`` and ``sseplay tail`` never pay for it.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import shutil
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sseplay.errors import CannotServe

logger = logging.getLogger("sseplay.server")

# The names a --self-signed certificate is good for: what the printed URLs and a browser
# on the same machine use (RFC 6761 section 6.3: localhost is always the loopback).
SELF_SIGNED_NAMES = ("localhost", "127.0.0.1", "::1")
# Long enough for any session, short enough that a leaked throwaway key soon means nothing.
SELF_SIGNED_DAYS = 30
# The most read of a --certfile or --keyfile. A PEM chain with its key is a few KiB (an
# RSA-4096 leaf and two intermediates come to about 7 KiB); this leaves room for long chains
# and stops ``/dev/zero`` or a multi-GB file given by mistake from exhausting memory.
MAX_PEM_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """What uvicorn is given: the certificate chain, its key, and for ``--self-signed`` the CA
    file a client trusts (``sseplay tail --cacert``) and the directory removed at the end."""

    certfile: Path
    keyfile: Path | None
    ca_file: Path | None = None
    directory: Path | None = None

    def remove(self) -> None:
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


class _EncryptedKey(Exception):
    """The key needs a password: OpenSSL would otherwise ask for it on the terminal."""


def _no_password() -> str:
    raise _EncryptedKey


def _read(flag: str, path: Path) -> bytes:
    """The file's bytes, read at most ``MAX_PEM_BYTES`` + 1 of them: more is not a PEM file."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_PEM_BYTES + 1)
    except OSError as error:
        raise CannotServe(f"{flag} {path}: cannot read it: {error.strerror}") from None
    if len(data) > MAX_PEM_BYTES:
        what = "certificate" if flag == "--certfile" else "key"
        raise CannotServe(
            f"{flag} {path}: more than {MAX_PEM_BYTES >> 20} MiB, too large for a PEM {what} "
            f"file (a chain and its key are a few KiB): give the PEM {what} file"
        )
    return data


def check_pair(certfile: Path, keyfile: Path | None) -> None:
    """Raise ``CannotServe`` with one line saying what is wrong with the pair, if anything."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    key_flag, key_path = ("--keyfile", keyfile) if keyfile is not None else ("--certfile", certfile)
    cert_bytes = _read("--certfile", certfile)
    key_bytes = cert_bytes if keyfile is None else _read("--keyfile", keyfile)
    try:
        certificate = x509.load_pem_x509_certificates(cert_bytes)[0]
    except ValueError:
        raise CannotServe(
            f"--certfile {certfile}: no PEM certificate in it (-----BEGIN CERTIFICATE-----)"
        ) from None
    try:
        key = serialization.load_pem_private_key(key_bytes, password=None)
    except TypeError:  # "Password was not given but private key is encrypted"
        raise CannotServe(
            f"{key_flag} {key_path}: the key is encrypted and sseplay cannot ask for its "
            "password: decrypt it (openssl pkey -in KEY -out PLAIN.pem)"
        ) from None
    except (ValueError, UnsupportedAlgorithm) as error:
        if keyfile is None:
            raise CannotServe(
                f"--certfile {certfile}: no private key in it: give the key with --keyfile"
            ) from None
        raise CannotServe(
            f"--keyfile {keyfile}: no PEM private key in it ({type(error).__name__})"
        ) from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if certificate.public_key().public_bytes(encoding, public) != key.public_key().public_bytes(
        encoding, public
    ):
        raise CannotServe(
            f"{key_flag} {key_path} is not the key of --certfile {certfile}: "
            "give the key the certificate was made for"
        )
    # The last word is OpenSSL's, which uvicorn loads them with.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile, keyfile, _no_password)
    except _EncryptedKey:
        raise CannotServe(f"{key_flag} {key_path}: the key is encrypted") from None
    except ssl.SSLError as error:
        raise CannotServe(
            f"--certfile {certfile} / {key_flag} {key_path}: OpenSSL refuses them: "
            f"{error.reason or error}"
        ) from None
    now = datetime.datetime.now(datetime.UTC)
    if certificate.not_valid_after_utc < now:
        logger.warning(
            "--certfile %s expired on %s: clients will refuse it",
            certfile,
            certificate.not_valid_after_utc.date(),
        )


def _names(host: str) -> list[Any]:
    """The subject alternative names (RFC 5280 section 4.2.1.6) for the self-signed
    certificate: the loopback names, and the listening address when it is a specific one."""
    from cryptography import x509

    wanted = list(SELF_SIGNED_NAMES)
    if host not in wanted and host not in ("0.0.0.0", "::", ""):
        wanted.append(host)
    names: list[Any] = []
    for name in wanted:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    return names


def make_self_signed(host: str) -> TlsFiles:
    """A throwaway CA and a server certificate it signed, in a new private directory.

    A CA apart from the leaf, as trustme does: a client trusts the CA file, and the leaf
    carries what browsers demand of a server certificate (subjectAltName, serverAuth)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    # An hour back, so a client whose clock is a little behind still accepts it.
    not_before, not_after = (
        now - datetime.timedelta(hours=1),
        now + datetime.timedelta(days=SELF_SIGNED_DAYS),
    )
    # P-256 keys are made in a millisecond, where RSA takes tens; every browser takes them.
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sseplay throwaway CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(_names(host)), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    directory = Path(tempfile.mkdtemp(prefix="sseplay-tls-"))  # mode 0700: the key is private
    ca_file = directory / "ca.pem"
    certfile = directory / "cert.pem"
    keyfile = directory / "key.pem"
    ca_file.write_bytes(ca_cert.public_bytes(pem))
    certfile.write_bytes(cert.public_bytes(pem))
    keyfile.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    keyfile.chmod(0o600)
    return TlsFiles(certfile, keyfile, ca_file, directory)


def server_tls(
    certfile: str | None, keyfile: str | None, self_signed: bool, host: str
) -> TlsFiles | None:
    """The files to serve HTTPS with, checked; None for plain HTTP."""
    if self_signed:
        files = make_self_signed(host)
        logger.warning(
            "--self-signed: a throwaway certificate for %s; its CA is %s "
            "(sseplay tail --cacert %s URL trusts it)",
            ", ".join(str(name.value) for name in _names(host)),
            files.ca_file,
            files.ca_file,
        )
        return files
    if certfile is None:
        return None
    cert_path = Path(certfile)
    key_path = Path(keyfile) if keyfile is not None else None
    check_pair(cert_path, key_path)
    return TlsFiles(cert_path, key_path)
