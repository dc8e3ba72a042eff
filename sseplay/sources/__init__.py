"""Live sources a route can be served from besides an event file: a followed file or pipe
(``follow``), a Redis stream (``redis_reader``, ``redis_feed``) and publishing a file's
schedule into one (``redis_publish``). Each feeds a ``sseplay.feed.Feed``."""
