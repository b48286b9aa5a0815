"""A credential in a prompt's options is refused: options are written to the log and sent
to other processes (headers, query parameters and the request body's fields alike)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from counting_model import Counting
from pydantic import ValidationError

from llmgine.bus import MessageBus
from llmgine.errors import ConfigurationError
from llmgine.llm import LLMEngine, PromptCommand
from llmgine.llm.commands import credentials_in

pytestmark = pytest.mark.timeout(60)

SECRET = "BODYSECRET-123"


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"extra_body": {"api_key": SECRET}}, "extra_body['api_key']"),
        ({"extra_body": {"apiKey": SECRET}}, "extra_body['apiKey']"),
        ({"extra_body": {"token": SECRET}}, "extra_body['token']"),
        ({"extra_body": {"access_token": SECRET}}, "extra_body['access_token']"),
        ({"extra_body": {"Authorization": SECRET}}, "extra_body['Authorization']"),
        ({"extra_body": {"password": SECRET}}, "extra_body['password']"),
        ({"extra_body": {"client_secret": SECRET}}, "extra_body['client_secret']"),
        ({"extra_body": {"upstream": {"openai_api_key": SECRET}}}, "['openai_api_key']"),
        ({"extra_body": {"servers": [{"name": "a", "secret": SECRET}]}}, "[0]['secret']"),
        ({"token": SECRET}, "token"),
    ],
)
def test_a_credential_in_the_request_body_is_refused_without_repeating_it(
    options: dict[str, Any], says: str
) -> None:
    assert any(says in found for found in credentials_in(options))
    with pytest.raises(ValidationError, match="options carry a credential") as info:
        PromptCommand(prompt="hi", options=options)
    assert says in str(info.value) and SECRET not in str(info.value)


def test_body_fields_that_are_no_credential_are_sent() -> None:
    body = {
        "max_tokens": 5,
        "top_k": 3,
        "cache_prompt": True,
        "keywords": ["key", "token"],
        "chat_template_kwargs": {"enable_thinking": False},
        "skip_special_tokens": True,
    }
    assert credentials_in({"extra_body": body, "max_tokens": 9}) == []
    assert PromptCommand(prompt="hi", options={"extra_body": body}).options == {"extra_body": body}


async def test_map_refuses_a_credential_in_extra_body_before_any_call(
    bus: MessageBus,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("LLMGINE_CACHE_DIR", str(tmp_path / "cache"))
    model = Counting()
    engine = LLMEngine(bus, provider=model)
    with pytest.raises(ConfigurationError, match="credential") as info:
        await engine.map(
            pd.DataFrame({"a": ["x"]}), "{a}", progress=False, extra_body={"api_key": SECRET}
        )
    assert SECRET not in str(info.value) and SECRET not in caplog.text
    assert model.calls == 0
