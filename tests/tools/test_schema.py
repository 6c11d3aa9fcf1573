"""Arguments models built from JSON schemas (how MCP tools validate before calling)."""

from __future__ import annotations

from typing import Any

import pytest

import phalanx
from phalanx.tools import Tool
from phalanx.tools._schema import schema_model

POINT = {
    "type": "object",
    "properties": {
        "p": {"$ref": "#/$defs/Point"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2, "default": []},
        "mode": {"anyOf": [{"enum": ["a", "b"]}, {"type": "null"}], "default": None},
    },
    "required": ["p"],
    "$defs": {
        "Point": {
            "type": "object",
            "properties": {"x": {"type": "integer"}, "y": {"type": "number", "default": 0}},
            "required": ["x"],
        }
    },
}
ODD = {
    "type": "object",
    "properties": {
        "model_config": {"type": "string", "pattern": "^a"},
        "user-id": {"type": "integer", "minimum": 1},
        "json": {"type": "array", "items": {"type": "number"}, "uniqueItems": True},
    },
    "additionalProperties": False,
}
TREE = {
    "type": "object",
    "properties": {"node": {"$ref": "#/$defs/Node"}},
    "$defs": {
        "Node": {
            "type": "object",
            "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/Node"}}},
        }
    },
}


def tool(name: str, schema: dict[str, Any]) -> Tool:
    return Tool(
        name=name, description="", fn=lambda **_: None, arguments_model=schema_model(name, schema)
    )


def test_the_model_shows_the_original_schema() -> None:
    """A model is shown the schema exactly as the tool published it."""
    assert tool("point", POINT).parameters == POINT


def test_only_given_arguments_are_sent_by_their_property_names() -> None:
    """Left-out optional properties stay out (the server applies its defaults); values coerce."""
    point = tool("point", POINT)
    assert point.validate({"p": {"x": "3"}}) == {"p": {"x": 3}}
    assert point.validate('{"p": {"x": 1, "y": 2.5}, "mode": null}') == {
        "p": {"x": 1, "y": 2.5},
        "mode": None,
    }
    assert dict(point.parse({"p": {"x": 1}, "tags": ["t"]})) == {"p": {"x": 1}, "tags": ["t"]}
    odd = tool("odd", ODD)
    given = {"model_config": "abc", "user-id": 3, "json": [1, 2.5]}
    assert odd.validate(given) == given
    assert dict(odd.parse(given)) == given


@pytest.mark.parametrize(
    ("name", "arguments", "problem"),
    [
        ("point", {}, "p: Field required"),
        ("point", {"p": {"y": 1}}, "p.x: Field required"),
        ("point", {"p": {"x": 1.5}}, "p.x: Input should be a valid integer"),
        ("point", {"p": {"x": 1}, "mode": "c"}, "mode"),
        ("point", {"p": {"x": 1}, "tags": ["a", "b", "c"]}, "tags: List should have at most 2"),
        ("odd", {"user-id": 0}, "user-id: Input should be greater than or equal to 1"),
        ("odd", {"nope": 1}, "nope: Extra inputs are not permitted"),
        ("odd", {"model_config": "bc"}, "model_config: does not satisfy pattern='^a'"),
        ("odd", {"json": [1, 1]}, "json: does not satisfy uniqueItems=True"),
        ("tree", {"node": {"kids": [{"kids": 3}]}}, "node.kids.0.kids: does not satisfy type"),
    ],
)
def test_arguments_breaking_the_schema_are_refused(
    name: str, arguments: dict[str, Any], problem: str
) -> None:
    """Pydantic's checks and then the whole schema's refuse bad arguments, naming the property."""
    schemas = {"point": POINT, "odd": ODD, "tree": TREE}
    with pytest.raises(phalanx.ToolArgumentsError) as refused:
        tool(name, schemas[name]).validate(arguments)
    assert problem in refused.value.errors


def test_a_schema_that_is_not_an_object_schema_is_refused() -> None:
    """A tool's arguments are an object; anything else cannot become a model."""
    with pytest.raises(TypeError, match="must describe an object"):
        schema_model("bad", {"type": "string"})
    with pytest.raises(TypeError, match="invalid arguments schema"):
        schema_model("bad", {"type": "object", "properties": {"x": {"type": 5}}})
