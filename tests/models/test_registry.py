"""Choosing a model from a spec string or PHALANX_MODEL."""

from __future__ import annotations

import pytest

from phalanx import ConfigError
from phalanx.agents import Message, ModelRequest, ScriptedModel
from phalanx.agents._anthropic import AnthropicModel
from phalanx.agents._openai import OpenAICompatibleModel
from phalanx.agents._registry import model_from_env, model_from_spec
from phalanx.testing import VirtualClock

from .fake_openai_server import FakeModelServer


@pytest.mark.parametrize("env", [{}, {"PHALANX_MODEL": ""}, {"PHALANX_MODEL": "scripted"}])
def test_scripted_is_the_default(env: dict[str, str]) -> None:
    """Unset, empty or "scripted" gives the offline scripted model."""
    model = model_from_env(env)

    assert isinstance(model, ScriptedModel)
    assert model.provider == "scripted"


def test_openai_spec_uses_the_key_from_env() -> None:
    """`openai:MODEL` is the official endpoint with OPENAI_API_KEY."""
    model = model_from_env({"PHALANX_MODEL": "openai:gpt-4o-mini", "OPENAI_API_KEY": "sk-x"})

    assert isinstance(model, OpenAICompatibleModel)
    assert (model.provider, model.name) == ("openai", "gpt-4o-mini")
    assert model.base_url == "https://api.openai.com/v1"


def test_openai_spec_without_a_key_names_the_variable() -> None:
    """`openai:MODEL` without OPENAI_API_KEY says to set it."""
    with pytest.raises(ConfigError, match="OPENAI_API_KEY") as info:
        model_from_spec("openai:gpt-4o-mini", env={})

    assert (info.value.setting, info.value.value) == ("model", "openai:gpt-4o-mini")


def test_openai_compatible_spec_needs_a_base_url_but_no_key() -> None:
    """`openai-compatible:MODEL` requires OPENAI_BASE_URL and makes the key optional."""
    with pytest.raises(ConfigError, match="OPENAI_BASE_URL"):
        model_from_spec("openai-compatible:llama3.1", env={})

    model = model_from_spec(
        "openai-compatible:llama3.1", env={"OPENAI_BASE_URL": "http://localhost:11434/v1"}
    )

    assert isinstance(model, OpenAICompatibleModel)
    assert (model.provider, model.name) == ("openai-compatible", "llama3.1")
    assert model.base_url == "http://localhost:11434/v1"


def test_anthropic_spec_needs_its_key() -> None:
    """`anthropic:MODEL` requires ANTHROPIC_API_KEY."""
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        model_from_spec("anthropic:claude-sonnet-4-5", env={})

    model = model_from_spec("anthropic:claude-sonnet-4-5", env={"ANTHROPIC_API_KEY": "sk-ant"})

    assert isinstance(model, AnthropicModel)
    assert (model.provider, model.name) == ("anthropic", "claude-sonnet-4-5")


@pytest.mark.parametrize("spec", ["gpt-4o", "ollama:llama3", "azure:gpt"])
def test_unknown_forms_list_the_supported_ones(spec: str) -> None:
    """An unknown spec's error lists every supported form."""
    with pytest.raises(ConfigError) as info:
        model_from_spec(spec, env={})

    for form in ("openai:MODEL", "openai-compatible:MODEL", "anthropic:MODEL", "scripted"):
        assert form in str(info.value)


def test_a_prefix_without_a_model_name_is_rejected() -> None:
    """`openai:` with no model name is a config error, not a call to model ''."""
    with pytest.raises(ConfigError, match="no model name"):
        model_from_spec("openai:", env={"OPENAI_API_KEY": "sk-x"})


async def test_the_clock_reaches_the_scripted_model() -> None:
    """A clock passed to the registry is the one the scripted model sleeps on."""
    clock = VirtualClock()
    model = model_from_env({}, clock=clock)
    before = clock.monotonic()

    await model.complete(ModelRequest(messages=(Message.user("hi"),)))

    assert clock.monotonic() > before  # its simulated latency passed on virtual time


async def test_spec_from_env_talks_to_the_configured_server(
    fake_server: FakeModelServer,
) -> None:
    """PHALANX_MODEL=openai-compatible:NAME with OPENAI_BASE_URL reaches that server."""
    model = model_from_env(
        {"PHALANX_MODEL": "openai-compatible:local-llm", "OPENAI_BASE_URL": fake_server.base_url}
    )
    assert isinstance(model, OpenAICompatibleModel)
    try:
        response = await model.complete(ModelRequest(messages=(Message.user("ping"),)))
    finally:
        await model.aclose()

    assert response.text == "echo: ping"
    assert fake_server.stats()["bodies"][0]["model"] == "local-llm"
