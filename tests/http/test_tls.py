"""HTTPS: --certfile/--keyfile, --self-signed and tail --cacert, against real servers."""

from __future__ import annotations

import re
import select
import signal
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from sseplay import Stream
from sseplay.config import ServerConfig
from sseplay.errors import CannotServe, UsageError
from sseplay.http.tls import TlsFiles, check_pair, make_self_signed
from sseplay.server import Server
from tests.conftest import ROOT, SAMPLES, run_cli, sseplay, write_lines

SCORES = str(SAMPLES / "scores.json")  # three events


class TlsServe:
    """``sseplay serve --port 0 ARGS`` as a subprocess, printing an https:// URL; ``ca_file``
    is the CA that --self-signed logged, if it did."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            sseplay("serve", "--port", "0", *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            cwd=ROOT,
        )
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        ready, _, _ = select.select([self.process.stdout], [], [], 20)
        assert ready, "sseplay serve printed no URL"
        self.url = self.process.stdout.readline().decode().strip()
        assert self.url.startswith("https://"), self.stop()
        self.base = self.url.rsplit("/", 1)[0]
        # Everything logged before the URL was printed is in the pipe already.
        self.log = b""
        while select.select([self.process.stderr], [], [], 0.5)[0]:
            chunk = self.process.stderr.read(65536)  # unbuffered: what is there
            if not chunk:
                break
            self.log += chunk
            if b"live viewer" in self.log:
                break
        found = re.search(rb"its CA is (\S+)", self.log)
        self.ca_file = found.group(1).decode() if found else None

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=10)
        return self.log.decode() + err.decode()

    def __enter__(self) -> TlsServe:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


@pytest.fixture
def pair() -> Iterator[TlsFiles]:
    """A certificate for localhost/127.0.0.1 and its key, signed by a CA of its own."""
    files = make_self_signed("127.0.0.1")
    yield files
    files.remove()


def trusting(ca_file: Path | str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


def test_certfile_and_keyfile_serve_https_and_the_urls_say_so(pair: TlsFiles) -> None:
    config = ServerConfig(certfile=str(pair.certfile), keyfile=str(pair.keyfile))
    assert pair.ca_file is not None
    with Server(Stream.from_file(SCORES, interval=0), config=config) as server:
        assert server.url.startswith("https://127.0.0.1:")
        response = httpx.get(server.url, verify=trusting(pair.ca_file), timeout=10)
        assert response.status_code == 200
        assert response.text.count("data: ") == 3
        # Plain HTTP to the HTTPS port is not answered with a stream.
        with pytest.raises(httpx.HTTPError):
            httpx.get(server.url.replace("https://", "http://"), timeout=5)


def test_a_key_inside_the_certificate_file_is_enough(pair: TlsFiles, tmp_path: Path) -> None:
    assert pair.keyfile is not None
    both = tmp_path / "both.pem"
    both.write_bytes(pair.certfile.read_bytes() + pair.keyfile.read_bytes())
    check_pair(both, None)  # raises if not
    with pytest.raises(CannotServe, match="no private key in it: give the key with --keyfile"):
        check_pair(pair.certfile, None)


def test_self_signed_is_trusted_by_tail_cacert_one_line_without_it_and_insecure_skips_it() -> None:
    with TlsServe(SCORES, "--self-signed", "--interval", "0") as server:
        assert server.ca_file is not None, server.log
        assert Path(server.ca_file).is_file()
        trusted = run_cli("tail", server.url, "--cacert", server.ca_file, "--count", "3", "-q")
        assert trusted.returncode == 0, trusted.stderr
        assert len(trusted.stdout.splitlines()) == 3
        untrusted = run_cli("tail", server.url, "--count", "1", "-q")
        assert untrusted.returncode == 1
        lines = untrusted.stderr.splitlines()
        assert len(lines) == 1, untrusted.stderr
        assert lines[0].startswith(f"sseplay: error: TLS failed for {server.url}:")
        assert "certificate verify failed" in lines[0]
        assert "--cacert FILE" in lines[0]
        assert "Traceback" not in untrusted.stderr
        insecure = run_cli("tail", server.url, "--insecure", "--count", "1", "-q")
        assert insecure.returncode == 0, insecure.stderr
        ca_file = server.ca_file
        log = server.stop()
    assert "a throwaway certificate for localhost, 127.0.0.1, ::1" in log
    # The throwaway key and its CA are removed when the server stops.
    assert not Path(ca_file).exists()


def test_the_self_signed_certificate_names_localhost_and_both_loopback_addresses() -> None:
    config = ServerConfig(self_signed=True)
    with Server(Stream.from_file(SCORES, interval=0), config=config) as server:
        assert server.ca_file is not None
        context = trusting(server.ca_file)
        port = server.url.split(":")[2].split("/")[0]
        for host in ("localhost", "127.0.0.1"):
            response = httpx.get(f"https://{host}:{port}/healthz", verify=context, timeout=10)
            assert response.json()["status"] == "ok"
        ca_file = server.ca_file
    assert not Path(ca_file).exists()


def _other_key(tmp_path: Path) -> Path:
    other = make_self_signed("127.0.0.1")
    try:
        assert other.keyfile is not None
        path = tmp_path / "other-key.pem"
        path.write_bytes(other.keyfile.read_bytes())
        return path
    finally:
        other.remove()


def test_a_mismatched_key_and_certificate_is_one_line_exit_4(
    pair: TlsFiles, tmp_path: Path
) -> None:
    wrong_key = _other_key(tmp_path)
    result = run_cli(
        "serve",
        SCORES,
        "--port",
        "0",
        "--certfile",
        str(pair.certfile),
        "--keyfile",
        str(wrong_key),
    )
    assert result.returncode == 4
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"sseplay: error: --keyfile {wrong_key} is not the key of --certfile {pair.certfile}: "
        "give the key the certificate was made for"
    ]


def test_every_bad_pair_is_one_cannot_serve_line(pair: TlsFiles, tmp_path: Path) -> None:
    assert pair.keyfile is not None
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("hello\n")
    encrypted = tmp_path / "encrypted.pem"
    key = serialization.load_pem_private_key(pair.keyfile.read_bytes(), None)
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    cases = {
        (tmp_path / "missing.pem", pair.keyfile): "cannot read it: No such file or directory",
        (not_pem, pair.keyfile): "no PEM certificate in it",
        (pair.certfile, not_pem): "no PEM private key in it",
        (pair.certfile, encrypted): "the key is encrypted and sseplay cannot ask for its password",
    }
    for (cert, key_path), expected in cases.items():
        with pytest.raises(CannotServe) as caught:
            check_pair(cert, key_path)
        message = str(caught.value)
        assert expected in message
        assert "\n" not in message
        # The Server refuses before binding anything.
        config = ServerConfig(certfile=str(cert), keyfile=str(key_path))
        with pytest.raises(CannotServe, match=re.escape(expected)):
            Server(Stream.from_file(SCORES), config=config).start()


def test_tls_flags_that_do_not_go_together_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--keyfile needs --certfile"):
        ServerConfig(keyfile="key.pem")
    with pytest.raises(UsageError, match="use --self-signed or --certfile, not both"):
        ServerConfig(certfile="cert.pem", self_signed=True)
    with pytest.raises(UsageError, match="--http2 needs TLS"):
        ServerConfig(http2=True)
    with pytest.raises(UsageError, match="--workers serves plain HTTP for now"):
        ServerConfig(self_signed=True, workers=2)
    result = run_cli("serve", SCORES, "--http2")
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert "--http2 needs TLS" in result.stderr
    bad_ca = write_lines(tmp_path / "ca.pem", [1])
    result = run_cli("tail", "https://127.0.0.1:1/events", "--cacert", str(bad_ca))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"sseplay: error: --cacert {bad_ca}: no PEM certificate in it (-----BEGIN CERTIFICATE-----)"
    ]
