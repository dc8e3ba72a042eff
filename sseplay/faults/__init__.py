"""Faults: a stream that fails the way real streams fail, at exact events, repeatably.

``spec`` parses ``--fault`` (pure); ``outlet`` plays a chosen fault on a connection;
``answers`` gives the responses sent instead of a stream (a status, a hang-up)."""
