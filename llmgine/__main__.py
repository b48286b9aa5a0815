"""Command line: ``python -m llmgine demo | lab | log | export | worker`` (see ``--help``)."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import subprocess
import sys
import warnings
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


def _warnings_to_stderr(caught: list[warnings.WarningMessage]) -> None:
    for warning in caught:
        print(f"llmgine: warning: {warning.message}", file=sys.stderr)


def _log(args: argparse.Namespace) -> int:
    from llmgine.analysis import summarize  # it says what is wrong with a path, a link, a time

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        text = summarize(args.path, since=args.since, until=args.until)
    _warnings_to_stderr(caught)
    print(text)
    print("(command latency: time in the handler, CommandResult.duration_ms)")
    return 0


def _headers(pairs: list[str]) -> dict[str, str]:
    from llmgine.errors import ConfigurationError

    headers = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(f"--header takes KEY=VALUE, e.g. api_key=...; got {key!r}")
        headers[key.strip()] = value
    return headers


def _export(args: argparse.Namespace) -> int:
    from llmgine.analysis.sources import log_files
    from llmgine.observability.otlp import OTLPExporter, redact_url

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        files = log_files(args.path)
    _warnings_to_stderr(caught)
    exporter = OTLPExporter(
        args.otlp,
        headers=_headers(args.header),
        service_name=args.service_name,
        project_name=args.project,
    )
    sent = 0
    try:
        for path in files:
            with path.open("rb") as lines:
                sent += exporter.export_lines(lines)
    finally:
        exporter.close()
    stats = exporter.stats
    where = redact_url(exporter.endpoint)
    print(f"exported {sent:,} spans from {len(files):,} file(s) to {where}")
    if stats.open_spans:
        print(f"  {stats.open_spans:,} span(s) never ended in the log and were not sent")
    if stats.skipped or stats.errors:
        print(f"  {stats.skipped + stats.errors:,} line(s) could not be read and were skipped")
    if stats.failed:
        print(f"llmgine: {where} did not accept {stats.failed:,} span(s)", file=sys.stderr)
        return 1
    return 0


def _prog() -> str:
    """How the user ran us: ``llmgine`` (the console script) or ``python -m llmgine``."""
    return "llmgine" if Path(sys.argv[0]).name == "llmgine" else "python -m llmgine"


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
        prog=_prog(),
        description="llmgine: event-driven LLM applications, made for Jupyter.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="run a short offline demo and show what it logged")
    demo.add_argument("--log-dir", default="logs", help="where to write demo.jsonl (default: logs)")
    log = sub.add_parser("log", help="summarize a JSONL log (a file or a directory of them)")
    log.add_argument("path", help="a .jsonl file or a directory of them")
    log.add_argument("--since", help="only lines at or after this time (ISO 8601, UTC if naive)")
    log.add_argument("--until", help="only lines before this time")
    export = sub.add_parser(
        "export", help="send a log's spans to an OTLP endpoint (Phoenix, Jaeger, Langfuse, ...)"
    )
    export.add_argument("path", help="a .jsonl file or a directory of them")
    export.add_argument(
        "--otlp", required=True, metavar="URL", help="e.g. http://127.0.0.1:6006 for Phoenix"
    )
    export.add_argument(
        "--header", action="append", default=[], metavar="KEY=VALUE", help="an HTTP header"
    )
    export.add_argument("--service-name", default="llmgine", help="service.name of the spans")
    export.add_argument("--project", help="the Phoenix project to put the spans in")
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
    return parser, {
        "demo": _demo,
        "export": _export,
        "lab": _lab,
        "log": _log,
        "worker": _worker,
    }


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
