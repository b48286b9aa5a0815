"""The tool the approval tests approve or deny, and what it ran."""

from __future__ import annotations

ran: list[str] = []
"""The paths ``delete_file`` was run with (the tests clear it before each test)."""


def delete_file(path: str) -> str:
    """Delete a file.

    Args:
        path: The file.
    """
    ran.append(path)
    return f"deleted {path}"
