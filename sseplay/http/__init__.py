"""The HTTP side of ``sseplay serve``: the only package that imports FastAPI, Starlette
and uvicorn. Every reach into uvicorn's private names lives in ``http.uvicorn``."""
