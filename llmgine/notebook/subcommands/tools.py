"""``%llmgine tools``, ``approve``, ``deny`` and ``mcp``: the default engine's tools."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from llmgine.errors import MagicError
from llmgine.llm.approval import ApproveToolCallCommand, describe_request
from llmgine.notebook.arguments import lookup, parser, split
from llmgine.notebook.notes import Note
from llmgine.notebook.runtime import get_runtime
from llmgine.notebook.sync import run_sync

__all__ = ["MCP_USAGE", "approve", "deny", "mcp", "tools"]

MCP_USAGE = (
    "mcp add [--name N] [--approval] [--env K=V] -- COMMAND ARGS... | mcp add --url URL "
    "| mcp list | mcp remove NAME"
)


def tools(shell: Any, line: str, cell: str | None) -> Any:
    """List the engine's tools, or register notebook functions as tools first."""
    engine = get_runtime().get_engine()
    names = line.split()
    approval = "--approval" in names  # each call of these tools waits for `%llmgine approve`
    for name in (n for n in names if n != "--approval"):
        if name.startswith("-"):
            raise MagicError(f"%llmgine tools: unknown option {name}; the one option is --approval")
        function = lookup(shell, name, "function")
        if not callable(function):
            raise MagicError(f"{name} is not a function")
        try:
            engine.register_tool(function, requires_approval=approval)
        except (TypeError, ValueError, NameError) as exc:
            raise MagicError(f"{name} cannot be a tool: {exc}") from None
    names = [
        f"`{t.name}`" + (" (needs approval)" if t.requires_approval else "") for t in engine.tools
    ]
    return Note("tools: " + (", ".join(names) if names else "none yet (`%llmgine tools FUNC`)"))


def approve(shell: Any, line: str, cell: str | None) -> Any:
    """``%llmgine approve [ID]``: run a waiting tool call (its approval id or call id)."""
    return _decide(line, approve=True)


def deny(shell: Any, line: str, cell: str | None) -> Any:
    """``%llmgine deny [ID [REASON]]``: refuse a waiting tool call; the model is told."""
    return _decide(line, approve=False)


def _decide(line: str, approve: bool) -> Note:
    verb = "approve" if approve else "deny"
    key, _, reason = line.strip().partition(" ")
    engine = get_runtime().get_engine()
    waiting = engine.approvals.waiting  # this kernel's and, on a shared bus, the others'
    if not key:
        if len(waiting) != 1:
            listed = "; ".join(describe_request(r) for r in waiting) or "none"
            raise MagicError(
                f"give the approval id (or a call id): `%llmgine {verb} ID`; "
                f"waiting for approval: {listed}"
            )
        key = waiting[0].approval_id
    if approve and reason.strip():
        raise MagicError(
            f"`%llmgine approve` takes only an approval id or a call id; got {reason.strip()!r} too"
        )
    # An approval id (or a unique start of one, 8 characters or more) names one call for
    # sure; a call id may match calls of several conversations and is then refused.
    by_approval = [r for r in waiting if len(key) >= 8 and r.approval_id.startswith(key)]
    if len(by_approval) == 1 or (not by_approval and _is_uuid(key)):
        approval_id = by_approval[0].approval_id if by_approval else key
        command = ApproveToolCallCommand(
            approval_id=approval_id, approve=approve, reason=reason.strip() or None
        )
    else:
        command = ApproveToolCallCommand(
            call_id=key, approve=approve, reason=reason.strip() or None
        )
    result = run_sync(engine.bus.execute(command))
    if not result.success:
        raise MagicError(str(result.error))
    run_sync(engine.bus.wait_for_events())
    return Note(str(result.result))


def _is_uuid(text: str) -> bool:
    try:
        UUID(text)
    except ValueError:
        return False
    return True


def mcp(shell: Any, line: str, cell: str | None) -> Any:
    """``%llmgine mcp add|list|remove``: MCP tool servers of the default engine."""
    words = split(line, "mcp")
    action = words[0] if words else ""
    command: list[str] = []
    if "--" in words:  # everything after a lone `--` is the server's command line
        cut = words.index("--")
        words, command = words[:cut], words[cut + 1 :]
    if action == "add":
        return _mcp_add(words[1:], command)
    if command:
        raise MagicError(f"only `mcp add` takes a command after --; usage: %llmgine {MCP_USAGE}")
    if action == "list" and len(words) == 1:
        return _mcp_list()
    if action == "remove" and len(words) == 2:
        engine = get_runtime().get_engine()
        run_sync(engine.remove_mcp_server(words[1]))
        return Note(f"MCP server `{words[1]}` stopped; its tools are withdrawn")
    raise MagicError(f"usage: %llmgine {MCP_USAGE}")


def _mcp_add(options: list[str], command: list[str]) -> Any:
    options_parser = parser("mcp add")
    options_parser.add_argument("--name", default=None)
    options_parser.add_argument("--url", default=None)
    options_parser.add_argument("--approval", action="store_true")
    options_parser.add_argument("--timeout", type=float, default=60.0)
    options_parser.add_argument("--env", action="append", default=[])
    args = options_parser.parse_args(options)
    if bool(command) == bool(args.url):
        raise MagicError(
            "give the server's command after `--` (`%llmgine mcp add -- mcp-server-time`) "
            "or its --url, not both"
        )
    env: dict[str, str] = {}
    for item in args.env:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise MagicError(f"--env takes KEY=VALUE; got {item.split('=')[0]!r}")
        env[key] = value
    engine = get_runtime().get_engine()
    server = run_sync(
        engine.add_mcp_server(
            command or None,
            url=args.url,
            env=env or None,
            name=args.name,
            timeout=args.timeout,
            requires_approval=args.approval,
        )
    )
    tools = ", ".join(f"`{t.name}`" for t in server.tools) or "none"
    note = f"MCP server `{server.name}` added; tools: {tools}"
    if server.renamed:
        shown = ", ".join(f"{remote!r} as `{name}`" for name, remote in server.renamed.items())
        note += f"; renamed for the model (names its API rejects): {shown}"
    if server.refused:
        note += "; left out: " + "; ".join(f"{n!r} ({why})" for n, why in server.refused.items())
    return Note(note)


def _mcp_list() -> Any:
    servers = list(get_runtime().get_engine().mcp_servers)
    if not servers:
        return Note("no MCP servers yet (`%llmgine mcp add -- COMMAND ARGS...`)")
    rows = [
        f"| `{s.name}` | `{s.target}` | {', '.join(t.name for t in s.tools)} |" for s in servers
    ]
    return Note("\n".join(["| server | command or URL | tools |", "|---|---|---|", *rows]))
