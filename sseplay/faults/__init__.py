"""Faults: a stream that fails the way real streams fail, at exact events, repeatably.

``spec`` parses ``--fault`` (pure); ``outlet`` plays a chosen fault on a connection. The
answers given instead of a stream (a status, a hang-up) are HTTP: ``sseplay.http.fault_answers``."""
