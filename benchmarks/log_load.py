"""Loading llmgine logs: load_events against read_json, and query() against load_events.

Writes a mixed log with the real envelope (benchmarks/make_log.py), then times, each in a
fresh process so that its peak RSS is its own:

- ``load_events`` alone (targets: <= 2.5 s, <= 1.5 GB, >= 5x faster than read_json);
- ``load_events`` + ``spans_frame`` + ``metrics_frame``;
- ``pandas.read_json(path, lines=True)``, the baseline.

With ``--big PATH`` it times instead, on a 10,000,000-line log (~5 GB, written to PATH once
and reused; keep it outside the repository), the summary of ``python -m llmgine log``
(one ``query()`` scan: commands per type, p50/p95 latency, tokens per model, errors;
targets <= 10 s and <= 1 GB peak RSS) against ``load_events`` on the same file.

    python benchmarks/log_load.py [--lines 1000000] [--repeat 3] [--keep PATH]
    python benchmarks/log_load.py --big /var/tmp/llmgine-10m.jsonl [--big-lines 10000000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from make_log import write_log

CHILD = """
import json, resource, sys, time, warnings
path, what = sys.argv[1], sys.argv[2]
import pandas as pd
from llmgine.analysis import load_events, metrics_frame, spans_frame, summarize
start = time.perf_counter()
if what == "query summary":
    rows = summarize(path).count("\\n")
elif what == "load_events":
    rows = len(load_events(path, progress=False))
elif what == "load+spans+metrics":
    df = load_events(path, progress=False)
    rows = len(df) + len(spans_frame(df)) + len(metrics_frame(df))
else:
    rows = len(pd.read_json(path, lines=True))
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_mb": peak, "rows": rows}))
"""


def run(path: Path, what: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), what], capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def big(path: Path, lines: int, repeat: int) -> None:
    if not path.exists():
        print(f"writing {lines:,} lines to {path} (once; reused by later runs) ...", flush=True)
        write_log(path, lines)
    size = path.stat().st_size / 2**30
    print(f"log: {path}, {size:.2f} GB")
    run(path, "query summary")  # warm the page cache
    summaries = [run(path, "query summary") for _ in range(repeat)]
    baseline = run(path, "load_events")
    seconds = statistics.median(r["seconds"] for r in summaries)
    peak = max(r["peak_mb"] for r in summaries)
    print()
    print(f"{'contender':<34} {'seconds':>8} {'peak RSS':>10}")
    label = f"query() summary (median of {repeat})"
    print(f"{label:<34} {seconds:>8.2f} {peak:>8.0f} MB")
    print(
        f"{'load_events (baseline)':<34} {baseline['seconds']:>8.2f} {baseline['peak_mb']:>8.0f} MB"
    )
    print()
    print(
        f"the query() summary takes {seconds / baseline['seconds']:.2f}x the time and "
        f"{peak / baseline['peak_mb']:.2f}x the memory of load_events alone "
        f"(targets: <= 10 s, <= 1024 MB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each llmgine contender")
    parser.add_argument("--keep", type=Path, help="write the log here and keep it")
    parser.add_argument("--big", type=Path, help="the 10M-line log: write it here once, reuse")
    parser.add_argument("--big-lines", type=int, default=10_000_000)
    args = parser.parse_args()
    if args.big is not None:
        big(args.big, args.big_lines, args.repeat)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "big.jsonl"
        lines = write_log(path, args.lines)
        size = path.stat().st_size / 2**20
        print(f"log: {lines:,} lines, {size:,.0f} MB")
        run(path, "load_events")  # warm the page cache, so every contender reads from memory
        results: dict[str, list[dict[str, float]]] = {"load_events": [], "load+spans+metrics": []}
        for _ in range(args.repeat):
            for what in results:
                results[what].append(run(path, what))
        baseline = run(path, "read_json")
    print()
    print(f"{'contender':<34} {'seconds':>8} {'peak RSS':>10}")
    medians = {}
    for what, runs in results.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        peak = max(r["peak_mb"] for r in runs)
        medians[what] = seconds
        print(f"{what + ' (median of ' + str(len(runs)) + ')':<34} {seconds:>8.2f} {peak:>8.0f} MB")
    print(
        f"{'pandas.read_json(lines=True)':<34} {baseline['seconds']:>8.2f} "
        f"{baseline['peak_mb']:>8.0f} MB"
    )
    print()
    ratio = baseline["seconds"] / medians["load_events"]
    print(
        f"load_events is {ratio:.1f}x faster than read_json (target >= 5x); "
        f"targets <= 2.5 s and <= 1.5 GB"
    )


if __name__ == "__main__":
    main()
