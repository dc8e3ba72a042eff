"""Each httpx (and httpcore) name sseplay relies on beyond the public API, as
sseplay/client/CONTRACT.md lists it: a release that changes one fails here."""

from __future__ import annotations

import asyncio
import gzip
import importlib.util
import subprocess
import sys

import httpx
import httpx._decoders
import httpx._models
from httpx._decoders import SUPPORTED_DECODERS

from tests.conftest import ROOT

CONTRACT = ROOT / "sseplay" / "client" / "CONTRACT.md"


def test_supported_decoders_maps_codings_to_decoder_classes() -> None:
    decoders = httpx._decoders.SUPPORTED_DECODERS
    assert isinstance(decoders, dict)
    assert {"identity", "gzip", "deflate"} <= set(decoders)
    for coding, decoder in decoders.items():
        assert isinstance(coding, str), coding
        assert coding == coding.lower(), coding
        assert issubclass(decoder, httpx._decoders.ContentDecoder), coding
    brotli = importlib.util.find_spec("brotli") or importlib.util.find_spec("brotlicffi")
    assert ("br" in decoders) == (brotli is not None)


def test_supported_decoders_is_what_the_response_decodes_by() -> None:
    assert httpx._models.SUPPORTED_DECODERS is httpx._decoders.SUPPORTED_DECODERS

    async def body(coding: str, content: bytes) -> bytes:
        response = httpx.Response(
            200, headers={"content-encoding": coding}, stream=httpx.ByteStream(content)
        )
        return b"".join([chunk async for chunk in response.aiter_bytes()])

    event = b"data: x\n\n"
    assert asyncio.run(body("gzip", gzip.compress(event))) == event
    # A coding outside the dict is passed through undecoded, without an error: why
    # tail checks Content-Encoding against the dict itself.
    assert "x-unknown" not in httpx._decoders.SUPPORTED_DECODERS
    assert asyncio.run(body("x-unknown", event)) == event


def test_the_proxy_decodes_a_copy_with_multi_identity_and_coding_decoders() -> None:
    """What ``sseplay.http.proxy_recording.content_decoder`` builds: a decoder per coding from the
    dict, several chained by ``MultiDecoder(children=...)`` (in the order the codings were
    applied), ``IdentityDecoder`` for none; ``decode`` piece by piece, then ``flush``."""
    from httpx._decoders import ContentDecoder, IdentityDecoder, MultiDecoder

    event = b"data: x\n\n" * 50
    twice = gzip.compress(gzip.compress(event))
    chained = MultiDecoder(children=[SUPPORTED_DECODERS["gzip"](), SUPPORTED_DECODERS["gzip"]()])
    assert isinstance(chained, ContentDecoder)
    pieces = [chained.decode(twice[i : i + 7]) for i in range(0, len(twice), 7)]
    assert b"".join(pieces) + chained.flush() == event
    identity = IdentityDecoder()
    assert isinstance(identity, ContentDecoder)
    assert identity.decode(b"raw") + identity.flush() == b"raw"
    broken = SUPPORTED_DECODERS["gzip"]()
    try:
        broken.decode(b"not gzip at all")
        broken.flush()
    except httpx.DecodingError:
        pass
    else:
        raise AssertionError("a body that does not decode raises httpx.DecodingError")


def test_httpx_imports_without_its_command_line_module() -> None:
    probe = (
        "import sys\n"
        "for name in ('httpx._main', 'trio', 'h2'):\n"
        "    sys.modules[name] = None\n"
        "import httpx, httpcore\n"
        "assert callable(httpx.main) and httpx.AsyncClient and httpcore.AsyncConnectionPool\n"
        "loaded = {m for m in sys.modules if m.startswith(('click', 'pygments'))}\n"
        "print('OK', sorted(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30
    )
    assert result.stdout.strip() == "OK []", result.stdout + result.stderr


def test_the_contract_names_the_floor_and_every_private_name() -> None:
    text = CONTRACT.read_text(encoding="utf-8")
    floors = (ROOT / "tests" / "floors.txt").read_text(encoding="utf-8").splitlines()
    floor = next(line for line in floors if line.startswith("httpx=="))
    assert floor in text
    for name in (
        "httpx._decoders.SUPPORTED_DECODERS",
        "httpx._decoders.MultiDecoder",
        "httpx._decoders.IdentityDecoder",
        "httpx._decoders.ContentDecoder",
        "httpx._main",
    ):
        assert f"`{name}`" in text
