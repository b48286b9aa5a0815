"""The example application: events trigger commands, the engine answers with a tool."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def app_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    yield
    for name in [m for m in sys.modules if m == "support_desk" or m.startswith("support_desk.")]:
        del sys.modules[name]


async def test_the_scenario_triages_and_answers(app_module: None, tmp_path: Path) -> None:
    from support_desk.bootstrap import bootstrap
    from support_desk.config import Config
    from support_desk.main import run

    app = bootstrap(config=Config(model="offline", log_dir=str(tmp_path)))
    lines = await run(app)
    assert len(lines) == 5
    tickets = app.store.all()
    assert [(t.category, t.priority) for t in tickets] == [
        ("billing", "normal"),
        ("access", "high"),
        ("shipping", "normal"),
        ("other", "normal"),
        (None, None),
    ]
    assert tickets[0].answer == (
        "Here is what the tools said: search_faq returned "
        "Refunds reach your card within 5 working days."
    )
    assert tickets[4].answer is None
    assert app.bus.log_path is not None
    types = [json.loads(x)["type"] for x in app.bus.log_path.read_text().splitlines()]
    assert types.count("TriageTicketCommand") == 5  # from the events, one per ticket
    assert types.count("CommandErrorEvent") == 1  # the empty ticket
    assert types.count("ToolResultEvent") == 4
    assert types.count("TicketAnsweredEvent") == 4


def test_main_prints_the_tickets(
    app_module: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SUPPORT_DESK_LOG_DIR", str(tmp_path))
    from support_desk.main import main

    main()
    out = capsys.readouterr().out
    assert "#2 bob  access    high" in out
    assert "(no answer: triage failed)" in out
    assert f"log: {tmp_path}" in out
