"""The flags of ``sseplay serve`` beyond a plain replay (control, verdicts, faults,
recordings, LLM shapes, scenarios, the canary), named once so that ``serve.py`` reads
as the command.

No ``from __future__ import annotations``: Typer reads these annotations at run time.
"""

from pathlib import Path
from typing import Annotated

import typer

MetricsOption = Annotated[
    bool,
    typer.Option(
        "--metrics",
        help="Serve GET /metrics for Prometheus (pip install 'sseplay[metrics]').",
    ),
]

ControlOption = Annotated[
    bool,
    typer.Option(
        "--control",
        help="The control API under /_sseplay/ (publish, pause, advance, connections); "
        "loopback clients only unless --token is set.",
    ),
]

ExpectClientOption = Annotated[
    list[str] | None,
    typer.Option(
        metavar="RULE[,RULE...]",
        help="Judge each client (repeatable): resumes, honours-retry, stops-on-204, "
        "backoff, max-reconnects=N, method=M, header=NAME:VALUE; when the server stops, "
        "a line per broken rule, and exit 9.",
        show_default=False,
    ),
]

ScenarioPresetOption = Annotated[
    str | None,
    typer.Option(
        metavar="NAME[:retry=MS]",
        help="A fault and the rules a client must keep through it: sse-retry, "
        "resume-before-id, stop-on-204.",
        show_default=False,
    ),
]

RedactOption = Annotated[
    list[str] | None,
    typer.Option(
        metavar="NAME",
        help="Hide this header or query parameter's value in the journal too "
        "(repeatable; Authorization, cookies and API keys always are).",
        show_default=False,
    ),
]

FaultOption = Annotated[
    list[str] | None,
    typer.Option(
        metavar="SPEC",
        help="Make streams fail at exact events (repeatable): KIND[:KEY=VALUE,...], like "
        "drop:after=5,conn=1. Kinds: status, refuse, hang, drop, reset, cut, stall, delay, "
        "slice, duplicate, skip, error-event, malformed; selectors: conn=, times=, p=.",
        show_default=False,
    ),
]

FaultHeaderOption = Annotated[
    bool,
    typer.Option(
        "--fault-header",
        help="Let a request name its own faults (Sseplay-Fault: SPEC, or ?fault=SPEC).",
    ),
]

SeedOption = Annotated[
    int | None,
    typer.Option(metavar="N", help="Seed of the p= draws of --fault. [default: a new one, logged]"),
]

MatchIgnoreOption = Annotated[
    list[str] | None,
    typer.Option(
        metavar="PATH",
        help="Recordings: leave this JSON body field out of matching (repeatable; "
        "dotted, * for any key or index: user, metadata.*, messages.*.id).",
        show_default=False,
    ),
]

ChunksOption = Annotated[
    bool,
    typer.Option(
        "--chunks",
        help="Recordings: send the body by the recorded network reads, with their "
        "pauses, instead of event by event.",
    ),
]

RecordMissingOption = Annotated[
    str | None,
    typer.Option(
        metavar="UPSTREAM",
        help="Recordings: forward a request that matches none to UPSTREAM and record it.",
    ),
]

ShapeOption = Annotated[
    str | None,
    typer.Option(
        metavar="SHAPE",
        help="Serve TURNS.jsonl (one model response a line) as an LLM provider streams "
        "it, at its routes: openai-chat, openai-responses, anthropic, gemini, ollama.",
        show_default=False,
    ),
]

ChunkOption = Annotated[
    str | None,
    typer.Option(
        metavar="UNIT:N",
        help="--shape: tokens of N words (words:N) or N characters (chars:N). [default: words:1]",
    ),
]

TtftOption = Annotated[
    float | None,
    typer.Option(metavar="SECONDS", help="--shape: seconds before the first token. [default: 0]"),
]

TpsOption = Annotated[
    float | None,
    typer.Option(
        metavar="N",
        help="--shape: tokens per second; 0 = as fast as the client reads. [default: 0]",
    ),
]

JitterOption = Annotated[
    float | None,
    typer.Option(
        metavar="F",
        help="--shape: each gap varies by up to this fraction, drawn from --seed. [default: 0]",
    ),
]

ScenarioOption = Annotated[
    Path | None,
    typer.Option(
        metavar="FILE",
        help="Answer by request: rules (JSON, or TOML for .toml) that pick each "
        "request's file by method, path, body, headers and query.",
        show_default=False,
    ),
]

CanaryOption = Annotated[
    bool,
    typer.Option(
        "--canary",
        help="Serve no file: an event every --interval (0.2 s) that carries when it was "
        "written, for 'sseplay tail URL --check-delivery' to find a buffering hop.",
    ),
]
