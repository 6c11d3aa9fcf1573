"""A valid instance of a JSON schema, for the scripted model's structured answers.

An agent with an `output_type` asks for JSON matching a schema. The scripted model,
when its script has no rule for the request, answers with the value built here, so
examples and tests that declare an `output_type` work offline without scripting one.
The value is deterministic (same schema, same value) and labelled where a string can
hold a label: it is plainly a scripted answer, not a model's.

Covered: objects (required properties, then the rest), arrays (`minItems`), strings
(`minLength`, `maxLength`, `enum`, `const`, `format` date/date-time/email/uri/uuid),
integers and numbers (`minimum`, `maximum`, exclusive bounds, `multipleOf`),
booleans, null, `anyOf`/`oneOf`/`allOf`, `$ref` into `$defs`, and defaults. A
`pattern` is not solved: pydantic models with one get a plain label, which the
agent's validation refuses as it would a real model's mistake.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

_LABEL = "scripted"
_FORMATS = {
    "date": "2026-01-01",
    "date-time": "2026-01-01T00:00:00Z",
    "time": "00:00:00",
    "email": "scripted@example.com",
    "uri": "https://example.com/scripted",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def schema_instance(schema: Mapping[str, Any]) -> Any:
    """A JSON value that validates against `schema` (see the module docstring)."""
    return _instance(schema, schema.get("$defs") or schema.get("definitions") or {}, "value")


def _instance(schema: Mapping[str, Any], defs: Mapping[str, Any], name: str) -> Any:
    if "$ref" in schema:
        target = str(schema["$ref"]).rpartition("/")[2]
        return _instance({**defs.get(target, {}), **_without(schema, "$ref")}, defs, name)
    if "const" in schema:
        return schema["const"]
    if "default" in schema:
        return schema["default"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "allOf" in schema:
        merged: dict[str, Any] = dict(_without(schema, "allOf"))
        for part in schema["allOf"]:
            merged.update(part)
        return _instance(merged, defs, name)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [o for o in schema[key] if o.get("type") != "null"] or schema[key]
            return _instance(options[0], defs, name)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        return _object(schema, defs)
    if kind == "array":
        items = schema.get("items") or {}
        count = max(1, int(schema.get("minItems", 1)))
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        return [_instance(items, defs, name) for _ in range(count)]
    if kind == "string":
        return _string(schema, name)
    if kind in ("integer", "number"):
        return _number(schema, integer=kind == "integer")
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return f"{_LABEL} {name}"  # no type said: any JSON value will do


def _object(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    properties: Mapping[str, Any] = schema.get("properties") or {}
    return {key: _instance(sub, defs, key) for key, sub in properties.items()}


def _string(schema: Mapping[str, Any], name: str) -> str:
    text = _FORMATS.get(str(schema.get("format")), f"{_LABEL} {name}")
    shortest = int(schema.get("minLength", 0))
    if len(text) < shortest:
        text += "." * (shortest - len(text))
    if "maxLength" in schema:
        text = text[: int(schema["maxLength"])]
    return text


def _number(schema: Mapping[str, Any], *, integer: bool) -> float | int:
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    value: float = 1
    if low is not None:
        value = low + (1 if "exclusiveMinimum" in schema and "minimum" not in schema else 0)
    elif high is not None:
        value = min(1, high - (1 if "exclusiveMaximum" in schema else 0))
    if high is not None and low is not None and value >= high:
        value = (low + high) / 2  # a narrow (or exclusive) range: its middle
    step = schema.get("multipleOf")
    if step:
        value = math.ceil(value / step) * step
    return math.ceil(value) if integer else float(value)


def _without(schema: Mapping[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != key}
