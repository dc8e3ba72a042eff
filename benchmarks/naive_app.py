"""The baseline a user writes first: FastAPI + sse-starlette, one sleeping generator each.

uvicorn benchmarks.naive_app:app   (NAIVE_FILE, NAIVE_INTERVAL from the environment)
"""

import asyncio
import json
import os

from fastapi import FastAPI
from sse_starlette import EventSourceResponse

app = FastAPI()
with open(os.environ["NAIVE_FILE"]) as records_file:
    RECORDS = [json.loads(line) for line in records_file if line.strip()]
INTERVAL = float(os.environ.get("NAIVE_INTERVAL", "0.1"))


@app.get("/events")
async def events() -> EventSourceResponse:
    async def generate():
        for number, record in enumerate(RECORDS, start=1):
            await asyncio.sleep(INTERVAL)
            yield {"id": str(number), "data": json.dumps(record)}

    return EventSourceResponse(generate())
