"""The start-up baseline of issue 12 item 7: a plain FastAPI app on uvicorn serving one event.

uvicorn benchmarks.plain_app:app --port 0   (PLAIN_FILE: a JSON array, default samples/scores.json)

It reads the same file as ``sseplay serve`` (so both pay for reading it) and answers
``GET /events`` with the first record as one event, at once: launch to its first body byte
is the start-up of FastAPI + uvicorn and nothing else.
"""

import json
import os

from fastapi import FastAPI
from fastapi.responses import StreamingResponse

app = FastAPI()
with open(os.environ.get("PLAIN_FILE", "samples/scores.json")) as records_file:
    RECORDS = json.load(records_file)


@app.get("/events")
async def events() -> StreamingResponse:
    async def generate():
        yield f"id: 1\ndata: {json.dumps(RECORDS[0])}\n\n"

    return StreamingResponse(generate(), media_type="text/event-stream")
