"""The JSONL log counts the lines it wrote without reading them back."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llmgine import JsonlLog


def test_lines_written_counts_chunks_of_several_lines_and_of_none(tmp_path: Path) -> None:
    log = JsonlLog(tmp_path / "x.jsonl")
    log.write(b'{"a": 1}\n')
    log.write(b'{"a": 2}\n{"a": 3}\n{"a": 4}\n')  # three lines at once
    log.write(b'{"a": 5}\n')
    log.flush()
    assert log.lines_written == 5 == len(log.path.read_bytes().splitlines())
    log.write(b'{"a": 6,')  # a line in two parts
    log.flush()
    assert log.lines_written == 5
    log.write(b' "b": 7}\n')
    log.close()
    assert log.lines_written == 6 == len(log.path.read_bytes().splitlines())
    assert json.loads(log.path.read_bytes().splitlines()[-1]) == {"a": 6, "b": 7}


FILE_SIZE_LIMIT = """
import json, resource, signal, sys
from pathlib import Path
from llmgine import JsonlLog

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
log = JsonlLog(Path(sys.argv[1]) / "x.jsonl")
resource.setrlimit(resource.RLIMIT_FSIZE, (1_000, hard))
for n in range(30):
    log.write(b'{"n": %d, "pad": "%s"}\\n' % (n, b"x" * 90))
log.write(b'{"n": 30}\\n{"n": 31}\\n')
counts = []
try:
    log.flush()
except OSError:
    counts.append(log.lines_written)  # what reached the file, whole lines only
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
log.write(b'{"n": 32}\\n')
log.close()
counts.append(log.lines_written)
print(json.dumps(counts))
"""


@pytest.mark.timeout(60)
def test_lines_written_counts_what_a_failed_write_left_out_once_it_is_written(
    tmp_path: Path,
) -> None:
    script = tmp_path / "limit.py"
    script.write_text(textwrap.dedent(FILE_SIZE_LIMIT))
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=50
    )
    assert out.returncode == 0, out.stderr
    during, after = json.loads(out.stdout)
    lines = (tmp_path / "x.jsonl").read_bytes().splitlines()
    assert 0 < during < 30  # the limit held lines back
    assert after == len(lines) == 33
    assert [json.loads(line)["n"] for line in lines] == list(range(33))
