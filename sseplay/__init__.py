"""sseplay: replay JSON event files as Server-Sent Events, and tail any SSE stream."""

__version__ = "0.1.0"
