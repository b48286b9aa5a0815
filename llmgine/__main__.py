"""Command line: ``python -m llmgine demo | lab | log PATH | worker MODULE:FUNCTION``."""

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
    print(f"\nThe log is {summary.log_path} ({summary.lines} lines):")
    for type_name, count in sorted(summary.counts.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {count:4d}  {type_name}")
    return 0


def _log(args: argparse.Namespace) -> int:
    import warnings

    from llmgine.analysis import LogReadWarning, load_events, summarize

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LogReadWarning)  # the summary reports skipped lines
        frame = load_events(args.path)
    print(summarize(frame))
    return 0


def _worker(args: argparse.Namespace) -> int:
    import logging

    from llmgine.bus.remote.worker import READY, run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    options = {
        "claim_after": args.claim_after,
        "heartbeat": args.heartbeat,
        "max_concurrency": args.max_concurrency,
    }

    def ready(bus: object) -> None:
        print(READY, flush=True)

    asyncio.run(
        run_worker(
            args.spec,
            args.redis,
            namespace=args.namespace,
            log_dir=args.log_dir,
            options=options,
            ready=ready,
        )
    )
    return 0


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
        prog="python -m llmgine",
        description="llmgine: event-driven LLM applications, made for Jupyter.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="run a short offline demo and show what it logged")
    demo.add_argument("--log-dir", default="logs", help="where to write demo.jsonl (default: logs)")
    log = sub.add_parser("log", help="summarize a JSONL log (a file or a directory of them)")
    log.add_argument("path", help="a .jsonl file or a directory of them")
    lab = sub.add_parser("lab", help="open JupyterLab on the quickstart notebook")
    lab.add_argument("notebook", nargs="?", help="a notebook to open instead")
    worker = sub.add_parser(
        "worker", help="serve handlers on a shared bus over Redis until SIGINT/SIGTERM"
    )
    worker.add_argument("spec", metavar="MODULE:FUNCTION", help="FUNCTION(bus) registers handlers")
    worker.add_argument(
        "--redis", required=True, metavar="URL", help="e.g. redis://127.0.0.1:6379/0"
    )
    worker.add_argument("--namespace", default="llmgine", help="the shared bus (default: llmgine)")
    worker.add_argument("--log-dir", default=None, help="write this process's JSONL log there")
    worker.add_argument(
        "--claim-after", type=float, default=15.0, metavar="S",
        help="take over a dead worker's command after S seconds (default: 15)",
    )  # fmt: skip
    worker.add_argument(
        "--max-concurrency", type=int, default=8, metavar="N", help="commands run at once"
    )
    worker.add_argument(
        "--heartbeat", type=float, default=1.0, metavar="S", help="seconds between heartbeats"
    )
    return parser, {"demo": _demo, "lab": _lab, "log": _log, "worker": _worker}


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
