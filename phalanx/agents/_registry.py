"""Pick a model from a spec string such as `openai:gpt-4o-mini` or from `PHALANX_MODEL`.

The supported forms::

    openai:MODEL             api.openai.com (or OPENAI_BASE_URL); needs OPENAI_API_KEY
    openai-compatible:MODEL  any OpenAI-compatible server at OPENAI_BASE_URL (vLLM,
                             Ollama, llama.cpp...); OPENAI_API_KEY optional;
                             PHALANX_LENIENT_TOOL_CALLS=1 recognises tool calls a
                             small model writes as JSON text (`LenientToolCalls`)
    anthropic:MODEL          Anthropic; needs ANTHROPIC_API_KEY (ANTHROPIC_BASE_URL optional)
    scripted                 the offline scripted model (the default when unset)

Adapters are imported only when chosen, so the scripted default needs no SDK.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .._clock import Clock
from .._errors import ConfigError
from ._http import PLACEHOLDER_API_KEY
from ._model import Model

MODEL_ENV = "PHALANX_MODEL"
#: Set (to 1) for an `openai-compatible:` model whose tool calls come as JSON text.
LENIENT_ENV = "PHALANX_LENIENT_TOOL_CALLS"

SUPPORTED_FORMS = (
    "openai:MODEL",
    "openai-compatible:MODEL",
    "anthropic:MODEL",
    "scripted",
)


def model_from_spec(
    spec: str, *, clock: Clock | None = None, env: Mapping[str, str] | None = None
) -> Model:
    """The model `spec` names, configured from `env` (default: the process environment).

    Example::

        model = model_from_spec("openai-compatible:llama3.1")  # needs OPENAI_BASE_URL

    Raises:
        ConfigError: an unknown form, an empty model name, or a missing variable
            (the message names the variable to set).
    """
    env = os.environ if env is None else env
    spec = spec.strip()
    if spec in ("", "scripted"):
        from ._scripted import ScriptedModel

        return ScriptedModel() if clock is None else ScriptedModel(clock=clock)
    prefix, sep, name = spec.partition(":")
    if not sep or prefix not in ("openai", "openai-compatible", "anthropic"):
        raise ConfigError(
            setting="model",
            value=spec,
            reason=f"unknown model spec; supported forms: {', '.join(SUPPORTED_FORMS)}",
        )
    name = name.strip()
    if not name:
        raise ConfigError(
            setting="model",
            value=spec,
            reason=f"no model name after {prefix!r}, e.g. {prefix}:NAME",
        )
    if prefix == "anthropic":
        from ._anthropic import ANTHROPIC_BASE_URL, AnthropicModel

        return AnthropicModel(
            name,
            api_key=_required(env, "ANTHROPIC_API_KEY", spec, example="sk-ant-..."),
            # Explicit defaults, so only `env` is read, never the process environment.
            base_url=env.get("ANTHROPIC_BASE_URL") or ANTHROPIC_BASE_URL,
            clock=clock,
        )
    from ._openai import OPENAI_BASE_URL, OpenAICompatibleModel

    if prefix == "openai":
        return OpenAICompatibleModel(
            name,
            api_key=_required(env, "OPENAI_API_KEY", spec, example="sk-..."),
            base_url=env.get("OPENAI_BASE_URL") or OPENAI_BASE_URL,
            provider="openai",
            clock=clock,
        )
    compatible = OpenAICompatibleModel(
        name,
        base_url=_required(env, "OPENAI_BASE_URL", spec, example="http://localhost:8000/v1"),
        # Local servers ignore the key, but the SDK insists on one.
        api_key=env.get("OPENAI_API_KEY") or PLACEHOLDER_API_KEY,
        provider="openai-compatible",
        clock=clock,
    )
    if env.get(LENIENT_ENV, "").strip().lower() in ("1", "true", "yes"):
        from ._lenient import LenientToolCalls

        return LenientToolCalls(compatible)
    return compatible


def model_from_env(env: Mapping[str, str] = os.environ, *, clock: Clock | None = None) -> Model:
    """The model `PHALANX_MODEL` names; the scripted model when it is unset or empty.

    Raises:
        ConfigError: as `model_from_spec`.
    """
    return model_from_spec(env.get(MODEL_ENV, ""), clock=clock, env=env)


def _required(env: Mapping[str, str], variable: str, spec: str, *, example: str) -> str:
    value = env.get(variable, "").strip()
    if not value:
        raise ConfigError(
            setting="model",
            value=spec,
            reason=f"{variable} is not set; set it, e.g. {variable}={example}",
        )
    return value
