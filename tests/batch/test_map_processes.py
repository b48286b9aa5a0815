"""``df.llmgine`` and the sync ``map`` as a plain script sees them: fresh interpreters."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)


def run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=100
    )


@pytest.mark.parametrize(
    "imports",
    [
        "import llmgine; import pandas as pd",
        "import pandas as pd; import llmgine",
        "import llmgine, pandas as pd",
        "from llmgine.evals import run_experiment; import pandas as pd",
    ],
)
def test_every_frame_has_df_llmgine_whichever_is_imported_first(
    imports: str, tmp_path: Path
) -> None:
    done = run(f"{imports}\nprint(type(pd.DataFrame({{'a': [1]}}).llmgine).__name__)", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "LLMgineAccessor"


def test_import_llmgine_alone_still_loads_no_pandas(tmp_path: Path) -> None:
    done = run("import sys, llmgine; print('pandas' in sys.modules)", tmp_path)
    assert done.stdout.strip() == "False", done.stderr


def test_a_plain_scripts_map_without_engine_ends_cleanly(tmp_path: Path) -> None:
    code = (
        "import pandas as pd, llmgine\n"
        "frame = pd.DataFrame({'x': ['a', 'b']})\n"
        "result = frame.llmgine.map('Say {x}', model='offline', progress=False)\n"
        "print(result['error'].isna().all(), len(result))\n"
    )
    done = run(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "2"]
    assert "Task was destroyed" not in done.stderr
    assert "Traceback" not in done.stderr
