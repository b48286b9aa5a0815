"""Command line: ``python -m llmgine demo`` (and more subcommands as they come)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from llmgine.demo import run_demo

    summary = asyncio.run(run_demo(args.log_dir, sys.stdout))
    print(f"\nThe log is {summary.log_path} ({summary.lines} lines):")
    for type_name, count in sorted(summary.counts.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {count:4d}  {type_name}")
    return 0


def _parser() -> tuple[argparse.ArgumentParser, dict[str, Callable[[argparse.Namespace], int]]]:
    parser = argparse.ArgumentParser(prog="python -m llmgine", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="run a short offline demo and show what it logged")
    demo.add_argument("--log-dir", default="logs", help="where to write demo.jsonl (default: logs)")
    return parser, {"demo": _demo}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser, commands = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
