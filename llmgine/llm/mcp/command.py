"""A stdio server's command, found in the Python environment this process runs in.

``%llmgine mcp add -- mcp-server-time`` runs in a kernel started from a virtual
environment that nobody activated: the environment's ``bin`` (where
``pip install mcp-server-time`` put the command) is not on ``PATH``. So a bare
command name is looked up first beside this process's own Python
(``sys.executable``), then on ``PATH``.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from llmgine.errors import ConfigurationError

__all__ = ["resolve_command"]


def _environment_bin() -> Path:
    """The folder of this process's Python (a venv's ``bin``; symlinks kept, not followed)."""
    return Path(sys.executable).parent


def resolve_command(command: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
    """Return ``command`` with its program as a full path.

    A program given with a folder (``./server``, ``/usr/bin/x``) is kept as it is. A bare
    name is looked up beside ``sys.executable`` first, then on ``PATH`` (the ``PATH``
    of ``env`` when it sets one, else this process's).

    Raises:
        ConfigurationError: The program is in neither place; the message names where
            it looked and how to install it.
    """
    program, *args = command
    if os.sep in program or (os.altsep is not None and os.altsep in program):
        return [program, *args]
    here = _environment_bin()
    found = shutil.which(program, path=str(here))
    path = (env or {}).get("PATH") or os.environ.get("PATH") or os.defpath
    if found is None:
        found = shutil.which(program, path=path)
    if found is None:
        raise ConfigurationError(
            f"cannot find the MCP server command {program!r}: looked in {here} (the "
            f"environment of this Python, {sys.executable}) and on PATH ({path}); install "
            f"the server into this environment (`{sys.executable} -m pip install PACKAGE`, "
            "or `%pip install PACKAGE` in a notebook) or give the command's full path"
        )
    return [found, *args]
