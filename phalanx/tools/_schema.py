"""Arguments models built from a JSON schema, for tools described by a schema alone.

A Python tool's arguments model comes from its signature (`_tool`). A remote tool (an
MCP server's, say) publishes only a JSON schema, and `schema_model` turns that schema
into a pydantic model, so its arguments are parsed and refused in the same place and
the same way (`Tool.parse`), before anything is sent:

- `type`, `enum`/`const`, `anyOf`/`oneOf`, local `$ref`s, nested objects and arrays, and
  the numeric and length bounds become pydantic types and constraints, so values are
  coerced as leniently as for a Python tool ("3" for an integer becomes 3);
- then the whole schema is checked, with `jsonschema` when it is installed (the MCP SDK
  brings it), against exactly what would be sent: that covers the keywords pydantic has
  no counterpart for (`pattern`, `not`, `if`/`then`, `uniqueItems`, ...);
- only the arguments given are sent (`dict(model)`, `model_dump()`): an optional
  property left out stays out, so the server applies its own default rather than
  receiving a `null` pydantic would have filled in;
- `model_json_schema()` is the original schema, so a model sees what the tool publishes.

What has no pydantic translation (a recursive or remote `$ref`, `prefixItems`, `allOf`
of several schemas, ...) accepts any JSON value in pydantic and is left to the schema
check. Property names that cannot be pydantic field names (`model_config`, `_x`,
`user-id`) become fields under another name with the property name as alias, so
errors and what is sent use the property name.
"""

from __future__ import annotations

import copy
import functools
import keyword
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, ClassVar, Literal, Union

import pydantic
import pydantic_core

#: Deeper schemas than this are accepted as any JSON value by pydantic (and still
#: checked by `jsonschema`): a guard against pathological nesting.
_MAX_DEPTH = 32

_SCALARS = (str, int, float, bool, type(None))


class SchemaArguments(pydantic.BaseModel):
    """Base of the arguments models `schema_model` builds; see the module docstring."""

    model_config = pydantic.ConfigDict(extra="allow", protected_namespaces=())

    #: The JSON schema the model was built from (top level: the whole schema).
    json_schema: ClassVar[dict[str, Any]] = {}
    #: Field name -> property name, for the fields whose names differ.
    property_names: ClassVar[dict[str, str]] = {}
    #: The `jsonschema` validator of the whole schema (top-level models only).
    checker: ClassVar[Any] = None

    @pydantic.model_serializer(mode="wrap")
    def _given_only(self, handler: pydantic.SerializerFunctionWrapHandler) -> Any:
        # Only what the caller gave, under the property names, whichever naming the
        # handler used (field names, or aliases with `by_alias`).
        data = handler(self)
        if not isinstance(data, dict):
            return data
        given = self.model_fields_set
        renamed = type(self).property_names
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            if name not in given:
                continue
            wire = renamed.get(name, name)
            key = name if name in data and name != wire else wire
            if key in data:
                out[wire] = data[key]
        for name in self.__pydantic_extra__ or {}:
            if name in data:
                out[name] = data[name]
        return out

    @pydantic.model_validator(mode="after")
    def _check_whole_schema(self) -> SchemaArguments:
        checker = type(self).checker
        if checker is None:
            return self
        problems = [_describe(error) for error in checker.iter_errors(self.model_dump(mode="json"))]
        if problems:
            raise pydantic_core.PydanticCustomError(
                "json_schema", "{problems}", {"problems": "; ".join(sorted(problems))}
            )
        return self

    def __iter__(self) -> Iterator[tuple[str, Any]]:  # type: ignore[override]  # JSON, not fields
        """The given arguments as JSON values, by property name: what a call sends."""
        return iter(self.model_dump(mode="json").items())

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The schema the model was built from, unchanged."""
        return copy.deepcopy(cls.json_schema)


class _ClosedArguments(SchemaArguments):
    """A schema with `additionalProperties: false`: unknown arguments are refused."""

    model_config = pydantic.ConfigDict(extra="forbid")


def _describe(error: Any) -> str:
    """One `jsonschema` error, without the offending value (it may be a secret)."""
    path = ".".join(str(p) for p in error.absolute_path) or "(arguments)"
    if error.validator in ("required", "additionalProperties", "dependentRequired"):
        return f"{path}: {error.message}"  # names properties, never values
    return f"{path}: does not satisfy {error.validator}={error.validator_value!r}"


def schema_model(name: str, schema: Mapping[str, Any]) -> type[SchemaArguments]:
    """An arguments model for the JSON schema of a tool's arguments (an object schema).

    Raises:
        TypeError: the schema is not a JSON object schema (a tool's arguments are an
            object), or is not a valid JSON schema.
    """
    root = dict(schema)
    if root.get("type", "object") != "object":
        raise TypeError(f"tool {name!r}: its arguments schema must describe an object")
    model = _Builder(root).model(f"{name}_arguments", root, 0)
    model.json_schema = copy.deepcopy(root)
    model.checker = _checker(name, root)
    return model


def _checker(name: str, schema: dict[str, Any]) -> Any:
    try:
        from jsonschema import exceptions, validators  # type: ignore[import-untyped]  # no stubs
    except ImportError:  # without it, pydantic's checks are all there is
        return None
    cls = validators.validator_for(schema, default=validators.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except exceptions.SchemaError as exc:
        raise TypeError(f"tool {name!r}: invalid arguments schema: {exc.message}") from exc
    return cls(schema)


class _Builder:
    """Translates one root schema; `$ref`s resolve against it."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.resolving: set[str] = set()

    def model(self, name: str, schema: dict[str, Any], depth: int) -> type[SchemaArguments]:
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        required = set(schema.get("required") or ())
        fields: dict[str, Any] = {}
        renamed: dict[str, str] = {}
        for index, (prop, subschema) in enumerate(properties.items()):
            field_name = prop
            if not _usable_field_name(prop):
                field_name = f"arg{index}_"
                while field_name in properties:
                    field_name += "_"
                renamed[field_name] = prop
            annotation = self.annotation(subschema, f"{name}_{prop}", depth + 1)
            if prop in required:
                default: Any = ...
            elif isinstance(subschema, dict) and "default" in subschema:
                default = copy.deepcopy(subschema["default"])
            else:
                default = None  # never validated, never sent: only given arguments are
            fields[field_name] = (annotation, pydantic.Field(default, alias=prop))
        base = _ClosedArguments if schema.get("additionalProperties") is False else SchemaArguments
        model = pydantic.create_model(name, __base__=base, **fields)
        model.property_names = renamed
        model.json_schema = {}
        return model

    def annotation(self, schema: Any, name: str, depth: int) -> Any:
        """The pydantic type for `schema`; `Any` where there is no faithful one."""
        if not isinstance(schema, dict) or not schema or depth > _MAX_DEPTH:
            return Any
        if "$ref" in schema:
            return self._ref(str(schema["$ref"]), name, depth)
        if "const" in schema:
            value = schema["const"]
            return Literal[value] if isinstance(value, _SCALARS) else Any
        if "enum" in schema:
            values = schema["enum"]
            if isinstance(values, list) and values and all(isinstance(v, _SCALARS) for v in values):
                return Literal[tuple(values)]
            return Any
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list):
                return self._union([self.annotation(s, name, depth + 1) for s in schema[key]])
        if "allOf" in schema:
            parts = schema["allOf"]
            single = isinstance(parts, list) and len(parts) == 1
            return self.annotation(parts[0], name, depth + 1) if single else Any
        kind = schema.get("type")
        if isinstance(kind, list):
            return self._union(
                [self.annotation({**schema, "type": k}, name, depth + 1) for k in kind]
            )
        if kind is None:
            return self._object(schema, name, depth) if "properties" in schema else Any
        return self._typed(kind, schema, name, depth)

    def _typed(self, kind: Any, schema: dict[str, Any], name: str, depth: int) -> Any:
        if kind == "string":
            return _constrained(
                str, min_length=schema.get("minLength"), max_length=schema.get("maxLength")
            )
        if kind in ("integer", "number"):
            bounds = {
                "ge": schema.get("minimum"),
                "le": schema.get("maximum"),
                "gt": schema.get("exclusiveMinimum"),
                "lt": schema.get("exclusiveMaximum"),
                "multiple_of": schema.get("multipleOf"),
            }
            # Draft 4's boolean exclusive bounds are left to the schema check.
            numeric = {k: v for k, v in bounds.items() if isinstance(v, int | float)}
            numeric = {k: v for k, v in numeric.items() if not isinstance(v, bool)}
            plain: Any = int if kind == "integer" else int | float
            return _constrained(plain, **numeric)
        if kind == "boolean":
            return bool
        if kind == "null":
            return None
        if kind == "array":
            items = self.annotation(schema.get("items", {}), f"{name}_item", depth + 1)
            return _constrained(
                list[items],  # type: ignore[valid-type]  # built at runtime
                min_length=schema.get("minItems"),
                max_length=schema.get("maxItems"),
            )
        if kind == "object":
            return self._object(schema, name, depth)
        return Any

    def _object(self, schema: dict[str, Any], name: str, depth: int) -> Any:
        if isinstance(schema.get("properties"), dict):
            return self.model(name, schema, depth)
        extra = schema.get("additionalProperties")
        values = (
            self.annotation(extra, f"{name}_value", depth + 1) if isinstance(extra, dict) else Any
        )
        return dict[str, values]  # type: ignore[valid-type]  # built at runtime

    def _ref(self, ref: str, name: str, depth: int) -> Any:
        if ref in self.resolving or not ref.startswith("#"):
            return Any  # recursive or remote: left to the schema check
        target: Any = self.root
        for part in ref[1:].split("/")[1:] if ref != "#" else []:
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                return Any
            target = target[part]
        self.resolving.add(ref)
        try:
            return self.annotation(target, name, depth + 1)
        finally:
            self.resolving.discard(ref)

    @staticmethod
    def _union(options: list[Any]) -> Any:
        if not options or any(o is Any for o in options):
            return Any
        return options[0] if len(options) == 1 else Union[tuple(options)]  # noqa: UP007  # built at runtime


def _constrained(annotation: Any, **constraints: Any) -> Any:
    given = {k: v for k, v in constraints.items() if v is not None}
    return Annotated[annotation, pydantic.Field(**given)] if given else annotation


@functools.cache
def _reserved() -> frozenset[str]:
    return frozenset(dir(SchemaArguments))


def _usable_field_name(name: str) -> bool:
    return (
        name.isidentifier()
        and not keyword.iskeyword(name)
        and not name.startswith("_")
        and not name.startswith("model_")
        and name not in _reserved()
    )
