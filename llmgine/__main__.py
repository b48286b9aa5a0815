"""Command line: ``python -m llmgine demo | lab | log | export | worker`` (see ``--help``)."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import math
import os
import shlex
import shutil
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from llmgine._lab import lab_command, run_forwarding_signals

__all__ = ["main"]

REDIS_URL_ENV = "LLMGINE_REDIS_URL"
"""The environment variable the worker takes its Redis URL from when ``--redis`` is not given."""


def _demo(args: argparse.Namespace) -> int:
    from llmgine.demo import run_demo

    summary = asyncio.run(run_demo(args.log_dir, sys.stdout))
    print(f"The log is {summary.log_path} ({summary.lines} lines):")
    for type_name, count in sorted(summary.counts.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {count:4d}  {type_name}")
    again = _invocation()
    lab_missing = importlib.util.find_spec("jupyterlab") is None
    print(
        "\nTry next:\n"
        f"  {again} log {shlex.quote(str(summary.log_path))}\n"
        "      the same run summarized: command latency percentiles, LLM calls, tokens\n"
        f"  {again} lab\n"
        "      the tutorials in JupyterLab"
        + (" (needs: pip install 'llmgine[lab]')" if lab_missing else "")
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


def _from_here(path: Path) -> str:
    """``path`` as a shell word: relative to the current directory when inside it."""
    path = path.absolute()
    try:
        text = str(path.relative_to(Path.cwd()))
        text = text if os.sep in text else f".{os.sep}{text}"  # never looked up on PATH
    except ValueError:
        text = str(path)
    return shlex.quote(text)


def _invocation() -> str:
    """The command that runs llmgine again from here, the way this run was started.

    ``python -m llmgine`` only when ``python`` on PATH is the interpreter running now
    (an activated venv); else that interpreter's path (``.venv/bin/python -m llmgine``).
    """
    argv0 = Path(sys.argv[0])
    if argv0.name == "llmgine":  # the console script
        found = shutil.which("llmgine")
        if found and Path(found).absolute() == argv0.absolute():
            return "llmgine"
        return _from_here(argv0)
    python = Path(sys.executable)
    found = shutil.which("python")
    if found and Path(found).absolute() == python.absolute():
        return "python -m llmgine"
    return f"{_from_here(python)} -m llmgine"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llmgine")
    except PackageNotFoundError:
        return "unknown (not installed: run pip install -e . in the clone)"


def _redis_url(args: argparse.Namespace) -> str:
    from llmgine.errors import ConfigurationError

    url = args.redis or os.environ.get(REDIS_URL_ENV, "").strip()
    if not url:
        raise ConfigurationError(
            f"Give the Redis URL with --redis URL or in the environment variable {REDIS_URL_ENV} "
            "(which keeps a password out of ps), e.g. redis://127.0.0.1:6379/0"
        )
    return url


def _scrub(text: str, url: str) -> str:
    """``text`` with ``url`` redacted and its secrets (password, token-like user) hidden."""
    from llmgine._urls import redact_text, redact_url, url_secrets

    return redact_text(text.replace(url, redact_url(url)), url_secrets(url))


def _worker(args: argparse.Namespace) -> int:
    import logging

    from llmgine._urls import redact_url
    from llmgine.bus.remote.worker import READY, run_worker
    from llmgine.errors import ConfigurationError, LLMgineError

    url = _redis_url(args)
    if args.claim_after < 2 * args.heartbeat:
        raise ConfigurationError(
            f"--claim-after ({args.claim_after:g}) must be at least twice --heartbeat "
            f"({args.heartbeat:g}): a running command's claim is renewed once per heartbeat"
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.redis and redact_url(args.redis) != args.redis:
        logging.getLogger("llmgine.worker").warning(
            "The Redis URL given with --redis holds a credential, which other users see in ps; "
            "set %s instead.",
            REDIS_URL_ENV,
        )
    options = {
        "claim_after": args.claim_after,
        "heartbeat": args.heartbeat,
        "max_concurrency": args.max_concurrency,
        "max_deliveries": args.max_deliveries,
        "connect_timeout": args.connect_timeout,
        "stop_timeout": args.stop_timeout,
    }

    def ready(bus: object) -> None:
        print(READY, flush=True)

    try:
        from redis.exceptions import RedisError
    except ImportError:  # bus.connect() says what to install
        RedisError = OSError  # type: ignore[assignment,misc]
    try:
        asyncio.run(
            run_worker(
                args.spec,
                url,
                namespace=args.namespace,
                log_dir=args.log_dir,
                options=options,
                ready=ready,
            )
        )
    except LLMgineError as exc:
        print(f"llmgine: {_scrub(' '.join(str(exc).split()), url)}", file=sys.stderr)
        return 2
    except (OSError, RedisError) as exc:  # the last resort: one line, no password
        what = " ".join(f"{type(exc).__name__}: {exc}".split())
        print(f"llmgine: the worker could not start or run: {_scrub(what, url)}", file=sys.stderr)
        return 1
    return 0


def _lab(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("jupyterlab") is None:
        print(
            "llmgine: JupyterLab is not installed; install it with: pip install 'llmgine[lab]'",
            file=sys.stderr,
        )
        return 2
    known = [
        *([f"--port={args.port}"] if args.port is not None else []),
        *([f"--ip={args.ip}"] if args.ip is not None else []),
        *(["--no-browser"] if args.no_browser else []),
    ]
    return run_forwarding_signals(lab_command(args.notebook, [*known, *args.jupyter_args]))


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds, e.g. 1.5")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1, e.g. 8")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return value


def _parser() -> tuple[argparse.ArgumentParser, dict[str, Callable[[argparse.Namespace], int]]]:
    parser = _Parser(
        prog=_prog(),
        description="llmgine: event-driven LLM applications, made for Jupyter.",
    )
    parser.add_argument("--version", action="version", version=f"llmgine {_version()}")
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
    lab = sub.add_parser(
        "lab",
        help="open JupyterLab on the quickstart notebook",
        description="Open JupyterLab on the quickstart notebook (or NOTEBOOK). JupyterLab's "
        "own options go after --, e.g. llmgine lab -- --ServerApp.token=secret",
    )
    lab.add_argument("notebook", nargs="?", help="a notebook to open instead")
    lab.add_argument("--port", type=_port, help="the port JupyterLab listens on")
    lab.add_argument("--ip", help="the address JupyterLab listens on (default: localhost)")
    lab.add_argument("--no-browser", action="store_true", help="do not open a browser")
    worker = sub.add_parser(
        "worker",
        help="serve handlers on a shared bus over Redis until SIGINT/SIGTERM",
        description="Serve handlers on a shared bus over Redis. SIGINT/SIGTERM: finish what "
        "runs, then exit; a second one: exit at once, abandoning it (another worker takes "
        "the commands over after --claim-after seconds).",
    )
    worker.add_argument("spec", metavar="MODULE:FUNCTION", help="FUNCTION(bus) registers handlers")
    worker.add_argument(
        "--redis",
        metavar="URL",
        help=f"e.g. redis://127.0.0.1:6379/0; default: the environment variable {REDIS_URL_ENV} "
        "(use it for a URL with a password: the command line shows in ps)",
    )
    worker.add_argument("--namespace", default="llmgine", help="the shared bus (default: llmgine)")
    worker.add_argument("--log-dir", default=None, help="write this process's JSONL log there")
    worker.add_argument(
        "--claim-after", type=_seconds, default=15.0, metavar="S",
        help="take over a dead worker's command after S seconds (default: 15; at least twice "
        "--heartbeat)",
    )  # fmt: skip
    worker.add_argument(
        "--max-concurrency", type=_count, default=8, metavar="N", help="commands run at once"
    )
    worker.add_argument(
        "--heartbeat", type=_seconds, default=1.0, metavar="S", help="seconds between heartbeats"
    )
    worker.add_argument(
        "--max-deliveries", type=_count, default=3, metavar="N",
        help="answer a command as failed once it has crashed N workers in turn (default: 3)",
    )  # fmt: skip
    worker.add_argument(
        "--connect-timeout", type=_seconds, default=5.0, metavar="S",
        help="give up joining if Redis does not answer within S seconds (default: 5)",
    )  # fmt: skip
    worker.add_argument(
        "--stop-timeout", type=_seconds, default=5.0, metavar="S",
        help="at exit, wait at most S seconds for Redis to take what is left (default: 5)",
    )  # fmt: skip
    return parser, {
        "demo": _demo,
        "export": _export,
        "lab": _lab,
        "log": _log,
        "worker": _worker,
    }


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; for ``lab``, unknown options are refused and what follows ``--`` kept."""
    split = argv.index("--") if "--" in argv else len(argv)
    args, unknown = parser.parse_known_args(argv[:split])
    if args.command != "lab":
        return parser.parse_args(argv)
    if unknown:
        parser.error(
            f"lab: unknown option {unknown[0]}: JupyterLab's own options go after --, "
            f"e.g. {_prog()} lab -- {unknown[0]}"
        )
    args.jupyter_args = argv[split + 1 :]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser, commands = _parser()
    args = _parse(parser, list(sys.argv[1:] if argv is None else argv))
    if args.command is None:
        parser.print_help()
        return 2
    from llmgine.errors import LLMgineError

    try:
        return commands[args.command](args)
    except LLMgineError as exc:
        print(f"llmgine: {' '.join(str(exc).splitlines())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llmgine: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
