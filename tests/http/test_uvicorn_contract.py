"""Every uvicorn name sseplay relies on exists with the shape it relies on (see
sseplay/http/uvicorn/CONTRACT.md, which names the test for each): a release that changes
one fails here, by name, before it can change what a client gets."""

from __future__ import annotations

import asyncio
import inspect
import socket
import sys

import uvicorn
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from sseplay.http.uvicorn.direct import LeanFlowControl
from sseplay.http.uvicorn.protocol import UNFINISHED, HeadLimitedHttpToolsProtocol


def parameters(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)  # type: ignore[arg-type]


def a_protocol() -> HttpToolsProtocol:
    """A protocol made as uvicorn's server makes one, on a transport of a socket pair."""
    config = uvicorn.Config(app=lambda *_: None, http=HeadLimitedHttpToolsProtocol)
    config.load()
    return HeadLimitedHttpToolsProtocol(
        config=config, server_state=uvicorn.server.ServerState(), app_state={}
    )


def test_the_httptools_protocol_methods_sseplay_overrides() -> None:
    assert parameters(HttpToolsProtocol.__init__)[:4] == [
        "self",
        "config",
        "server_state",
        "app_state",
    ]
    for name, arguments in {
        "connection_made": ["self", "transport"],
        "data_received": ["self", "data"],
        "connection_lost": ["self", "exc"],
        "on_message_begin": ["self"],
        "on_body": ["self", "body"],
        "on_headers_complete": ["self"],
        "on_message_complete": ["self"],
        "on_response_complete": ["self"],
        "_start_asgi_task": ["self", "cycle", "app"],
    }.items():
        assert parameters(getattr(HttpToolsProtocol, name)) == arguments, name


def test_start_asgi_task_creates_the_task_as_sseplay_does() -> None:
    # sseplay's replacement runs its own copy of run_asgi the way uvicorn's runs the
    # cycle's: a task on the protocol's loop, in self.tasks, discarded when done.
    source = inspect.getsource(HttpToolsProtocol._start_asgi_task)
    assert "cycle.run_asgi(app)" in source
    assert "self.config.reset_contextvars" in source
    assert "task.add_done_callback(self.tasks.discard)" in source
    assert "self.tasks.add(task)" in source


def test_the_protocol_instance_attributes_sseplay_reads() -> None:
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        protocol = a_protocol()
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    for name in ("cycle", "transport", "loop", "config", "tasks", "client", "parser", "flow"):
        assert hasattr(protocol, name), name
    assert hasattr(protocol.config, "reset_contextvars")


def test_the_protocol_uses_pipeline_message_event_and_flow_as_the_stand_ins_do() -> None:
    source = inspect.getsource(HttpToolsProtocol)
    # The queue of pipelined requests: appendleft, pop and its truth value only.
    assert "self.pipeline.appendleft((self.cycle, app))" in source
    assert "self.pipeline.pop()" in source
    assert "if self.pipeline:" in source
    # Each request's event, replaced by a LeanEvent before its task runs.
    assert "message_event=asyncio.Event()" in source
    # The flow control, made when the connection is, and replaced then.
    assert "self.flow = FlowControl(transport)" in source
    # The parser, made per connection and let go when it is lost.
    assert "httptools.HttpRequestParser(self)" in source
    assert "self.parser = None" in source


def test_the_request_cycle_is_where_direct_looks_for_it() -> None:
    assert RequestResponseCycle.__module__ == "uvicorn.protocols.http.httptools_impl"
    assert RequestResponseCycle.__qualname__ == "RequestResponseCycle"
    # ``receive.__self__`` is the cycle: what DirectBody.of, holder_of and transport_of use.
    assert inspect.iscoroutinefunction(RequestResponseCycle.receive)
    assert inspect.iscoroutinefunction(RequestResponseCycle.send)
    assert "on_response=self.on_response_complete" in inspect.getsource(HttpToolsProtocol)


def test_the_request_cycle_attributes_sseplay_reads() -> None:
    assert parameters(RequestResponseCycle.__init__) == [
        "self",
        "scope",
        "transport",
        "flow",
        "logger",
        "access_logger",
        "access_log",
        "default_headers",
        "message_event",
        "expect_100_continue",
        "keep_alive",
        "on_response",
    ]
    init = inspect.getsource(RequestResponseCycle.__init__)
    for name in (
        "scope",
        "transport",
        "flow",
        "logger",
        "message_event",
        "on_response",
        "disconnected",
        "keep_alive",
        "body",
        "more_body",
        "response_started",
        "response_complete",
    ):
        assert f"self.{name} = " in init, name
    # Set when the response starts without a Content-Length.
    assert "self.chunked_encoding = True" in inspect.getsource(RequestResponseCycle.send)
    assert inspect.iscoroutinefunction(RequestResponseCycle.send_500_response)


def test_run_asgi_is_still_the_one_sseplay_copied() -> None:
    # HeadLimitedHttpToolsProtocol._run_asgi is 0.54's run_asgi with one change (a held
    # stream's response goes on); its log lines and ends must stay uvicorn's.
    source = inspect.getsource(RequestResponseCycle.run_asgi)
    for line in (
        "result = await app(",
        "self.scope, self.receive, self.send",
        "except BaseException as exc:",
        '"Exception in ASGI application\\n"',
        "await self.send_500_response()",
        "self.transport.close()",
        "\"ASGI callable should return None, but returned '%s'.\"",
        '"ASGI callable returned without starting response."',
        f'"{UNFINISHED}"',
        "self.on_response = lambda: None",
    ):
        assert line in source, line
    assert "self.logger.error(" in source
    assert 'logging.getLogger("uvicorn.error")' in inspect.getsource(HttpToolsProtocol.__init__)


def test_flow_control_has_the_interface_of_the_lean_stand_in() -> None:
    assert parameters(FlowControl.__init__) == ["self", "transport"]
    for name in ("drain", "pause_reading", "resume_reading", "pause_writing", "resume_writing"):
        assert parameters(getattr(FlowControl, name)) == ["self"], name
        assert hasattr(LeanFlowControl, name), name
    assert inspect.iscoroutinefunction(FlowControl.drain)
    left, right = socket.socketpair()
    loop = asyncio.new_event_loop()
    try:

        async def made() -> FlowControl:
            transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, left)
            flow = FlowControl(transport)
            transport.close()
            return flow

        flow = loop.run_until_complete(made())
    finally:
        loop.close()
        right.close()
    assert flow.read_paused is False
    assert flow.write_paused is False


def test_the_server_methods_sseplay_overrides() -> None:
    assert parameters(uvicorn.Server.__init__) == ["self", "config"]
    for name in ("serve", "shutdown", "startup"):
        method = getattr(uvicorn.Server, name)
        assert inspect.iscoroutinefunction(method), name
        assert parameters(method) == ["self", "sockets"], name
    assert parameters(uvicorn.Server.capture_signals) == ["self"]
    handle_exit = uvicorn.Server.handle_exit
    # Other tests import sse-starlette (the encoder's reference), which replaces this
    # method for the whole process and keeps uvicorn's own: check uvicorn's.
    sse = sys.modules.get("sse_starlette.sse")
    app_status = getattr(sse, "AppStatus", None)
    if app_status is not None and handle_exit is app_status.handle_exit:
        # Kept on AppStatus by newer releases, in the module by older ones (2.1).
        handle_exit = getattr(app_status, "original_handler", None) or sse.original_handler
    assert parameters(handle_exit) == ["self", "sig", "frame"]


def test_the_server_state_sseplay_reads() -> None:
    server = uvicorn.Server(uvicorn.Config(app=lambda *_: None))
    assert server.started is False
    assert server.should_exit is False
    assert isinstance(server.server_state.connections, set)
    assert isinstance(server.config.is_ssl, bool)
    assert callable(server.config.get_loop_factory)
    assert "self.transport = transport" in inspect.getsource(HttpToolsProtocol.connection_made)


def test_the_config_keywords_sseplay_passes() -> None:
    keywords = set(parameters(uvicorn.Config.__init__))
    assert {
        "log_config",
        "access_log",
        "timeout_graceful_shutdown",
        "lifespan",
        "proxy_headers",
        "http",
        "h11_max_incomplete_event_size",
        "ssl_certfile",
        "ssl_keyfile",
        "reset_contextvars",
    } <= keywords
