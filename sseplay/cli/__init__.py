"""The ``sseplay`` command: one module per command, flags mapped onto the library's options."""

from sseplay.cli.app import main as main
