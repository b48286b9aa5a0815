"""notebooks/sanitize.cfg: what varies by nature is masked, and nothing else."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[1] / "notebooks" / "sanitize.cfg"


def sanitize(text: str) -> str:
    parser = configparser.ConfigParser()
    parser.read(CONFIG)
    for section in parser.sections():  # in file order, as nbval applies them
        text = re.sub(parser[section]["regex"], parser[section]["replace"], text)
    return text


def test_a_duration_with_sixteen_decimals_is_not_taken_for_an_id() -> None:
    assert sanitize("duration_ms=0.0593980000173885") == "duration_ms=N"
    assert sanitize("[span] X OK 0.4 ms trace=1abaa219") == "[span] X OK N ms trace=TRACE"


def test_ids_and_times_are_masked() -> None:
    text = (
        "UUID('e0851d6a-ccfd-4701-bb9c-54414a9ce59d') 16ed9783cc92ad41 "
        "7970246f8df4ae3085a139d2c13a2cd1 2026-11-24T16:21:22.123456+00:00 "
        "logs/events_20261124_162122_bb81cd.jsonl at 0x7f781b94cb60"
    )
    assert sanitize(text) == (
        "UUID('UUID') SPAN-ID TRACE-ID TIMESTAMP logs/events_STAMP.jsonl at 0xADDRESS"
    )


def test_ordinary_numbers_and_words_stay() -> None:
    text = "(True, 6, [6]) total_tokens 414 error rate: 5.6% Sunny, 21°C in Paris."
    assert sanitize(text) == text
