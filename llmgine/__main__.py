"""Command line: ``python -m llmgine demo | lab [NOTEBOOK] | log PATH``."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from llmgine.demo import run_demo

    summary = asyncio.run(run_demo(args.log_dir, sys.stdout))
    print(f"The log is {summary.log_path} ({summary.lines} lines):")
    for type_name, count in sorted(summary.counts.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {count:4d}  {type_name}")
    print(
        "\nTry next:\n"
        f"  {_prog()} log {summary.log_path}\n"
        "      the same run summarized: command latency percentiles, LLM calls, tokens\n"
        f"  {_prog()} lab\n"
        "      the tutorials in JupyterLab (needs: pip install 'llmgine[lab]')"
    )
    return 0


def _log(args: argparse.Namespace) -> int:
    import warnings

    from llmgine.analysis import LogReadWarning, load_events, summarize
    from llmgine.errors import ConfigurationError

    if not Path(args.path).exists():
        raise ConfigurationError(
            f"No log at {args.path}: give a .jsonl file or a directory of them"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LogReadWarning)  # the summary reports skipped lines
        frame = load_events(args.path)
    print(summarize(frame))
    print("(command latency: time in the handler, CommandResult.duration_ms)")
    return 0


def _prog() -> str:
    """How the user ran us: ``llmgine`` (the console script) or ``python -m llmgine``."""
    return "llmgine" if Path(sys.argv[0]).name == "llmgine" else "python -m llmgine"


QUICKSTART = Path("notebooks") / "01_quickstart.ipynb"


def lab_command(notebook: str | None) -> list[str]:
    """The command that opens JupyterLab (on ``notebook``, else on the quickstart if present)."""
    target = notebook or (str(QUICKSTART) if QUICKSTART.exists() else None)
    command = [sys.executable, "-m", "jupyterlab", *([target] if target else [])]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # containers often run as root; Jupyter refuses otherwise
    return command


def _lab(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("jupyterlab") is None:
        print(
            "llmgine: JupyterLab is not installed; install it with: pip install 'llmgine[lab]'",
            file=sys.stderr,
        )
        return 2
    return subprocess.call(lab_command(args.notebook))


def _parser() -> tuple[argparse.ArgumentParser, dict[str, Callable[[argparse.Namespace], int]]]:
    parser = argparse.ArgumentParser(
        prog=_prog(),
        description="llmgine: event-driven LLM applications, made for Jupyter.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="run a short offline demo and show what it logged")
    demo.add_argument("--log-dir", default="logs", help="where to write demo.jsonl (default: logs)")
    log = sub.add_parser("log", help="summarize a JSONL log (a file or a directory of them)")
    log.add_argument("path", help="a .jsonl file or a directory of them")
    lab = sub.add_parser("lab", help="open JupyterLab on the quickstart notebook")
    lab.add_argument("notebook", nargs="?", help="a notebook to open instead")
    return parser, {"demo": _demo, "lab": _lab, "log": _log}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser, commands = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from llmgine.errors import LLMgineError

    try:
        return commands[args.command](args)
    except LLMgineError as exc:
        print(f"llmgine: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
