"""``Server``'s side of the control API (``control=True``, issue 26): the operations of
``sseplay.http.control`` called from Python, from any thread (they run on the server's
loop)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sseplay.errors import UsageError

if TYPE_CHECKING:
    from sseplay.http.hub import Hub


class OpenConnections(int):
    """``Server.connections``: how many streams are open, and, called, the list of them
    (``control=True``)."""

    _list: Callable[[str], list[dict[str, Any]]]

    def __new__(cls, count: int, call: Callable[..., Any]) -> OpenConnections:
        made = super().__new__(cls, count)
        made._list = call
        return made

    def __call__(self) -> list[dict[str, Any]]:
        return self._list("listing")


class ControlMethods:
    """What ``Server`` offers with ``control=True``: publish, pause, resume, advance,
    kick, fault, and ``connections()`` (see ``OpenConnections``)."""

    _hub: Hub | None

    # --control: the control API from Python (``sseplay.http.control``), from any thread.

    def publish(self, route: str, data: object, event: str | None = None) -> str | None:
        """Send an event to every client of ``route`` (the route's next id, returned)."""
        return self._control_call("publish", route, data, event)  # type: ignore[no-any-return]

    def pause(self, route: str | None = None) -> None:
        """Hold the timeline of ``route`` (every route when None): no event goes out."""
        self._control_call("pause", route)

    def resume(self, route: str | None = None) -> None:
        self._control_call("resume", route)

    def advance(self, count: int, route: str | None = None) -> None:
        """Let each connection of a paused route have exactly ``count`` more events."""
        self._control_call("advance", count, route)

    def kick(self, connection_id: int) -> None:
        """End one connection (its id as ``connections()`` lists it)."""
        self._control_call("kick", connection_id)

    def fault(
        self, spec: str, conn: int | str = "next", route: str | None = None
    ) -> dict[str, Any]:
        """Arm a fault (as ``--fault``) for the next connection (of ``route``), or on an
        open one by its id: its ``after=``/``at=`` then count from the events that one
        was already sent (``"events"`` in the answer)."""
        return self._control_call("arm", spec, conn, route)  # type: ignore[no-any-return]

    # --control or --expect-client: the journal and the verdict (``sseplay.http.journal``),
    # while the server runs and after it stopped.

    def journal(self) -> list[dict[str, Any]]:
        """Every request to a stream route so far, oldest first (``GET /_sseplay/journal``)."""
        return self._journal_call("listing")  # type: ignore[no-any-return]

    def verdict(self) -> dict[str, Any]:
        """Whether the clients kept the rules of ``expect_client`` (``{"ok", "rules",
        "broken"}``, as ``GET /_sseplay/verdict``)."""
        return self._journal_call("verdict")  # type: ignore[no-any-return]

    def _journal_call(self, what: str) -> Any:
        journal = self._hub.journal if self._hub is not None else None
        if journal is None:
            if self._hub is None:
                raise RuntimeError("the server is not running: start it first")
            raise RuntimeError(
                f"{what} needs the journal: Server(..., control=True) or expect_client=[...]"
            )
        operation = journal.listing if what == "listing" else journal.referee.verdict
        return journal.call(operation)

    def _control_call(self, operation: str, *args: Any) -> Any:
        control = self._hub.control if self._hub is not None else None
        if control is None:
            if self._hub is None:
                raise RuntimeError("the server is not running: start it first")
            raise RuntimeError(f"{operation}() needs the control API: Server(..., control=True)")
        from sseplay.http.control import ControlError

        try:
            return control.call(getattr(control, operation), *args)
        except ControlError as error:
            raise UsageError(str(error)) from None
