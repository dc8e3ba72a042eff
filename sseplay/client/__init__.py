"""The client side, ``sseplay tail`` and ``sseplay.tail()``: the options, one HTTP
exchange, the reconnect loop, selection, assertions and rendering. Never imports
``sseplay.http`` or ``sseplay.sources``."""
