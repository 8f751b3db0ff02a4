"""Checks on what a client offers as tools and asks as output schema, the same for every wire format.

Each raises :class:`InvalidRequest` naming the offending parameter, as the wire format calls it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from clinvk_core.conversation import ToolChoice, ToolSpec, valid_unicode, valid_unicode_json
from clinvk_core.errors import InvalidRequest

TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
MAX_TOOLS = 128
EMPTY_OBJECT_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


def tool_spec(name: str, description: str | None, parameters: dict[str, Any] | None, *, param: str) -> ToolSpec:
    """A client's function, checked: a usable name, and parameters that are a JSON Schema of an object.

    Its description and schema go to the CLI as they are, so their text is made valid for it first."""
    if not TOOL_NAME.fullmatch(name):
        raise InvalidRequest(
            f"Invalid tool name {name[:80]!r}: use 1 to 64 letters, digits, '_' or '-'.", param=f"{param}.name"
        )
    schema = valid_unicode_json(parameters or EMPTY_OBJECT_SCHEMA)  # none, or {}: a function without arguments
    check_json_schema(schema, param=f"{param}.parameters", what=f"The parameters of tool {name!r}")
    if schema.get("type") != "object":
        raise InvalidRequest(
            f"The parameters of tool {name!r} must be a JSON Schema of type 'object'.", param=f"{param}.parameters"
        )
    return ToolSpec(name, valid_unicode(description or ""), schema)


def check_tool_set(tools: Sequence[ToolSpec], *, param: str) -> None:
    """At most :data:`MAX_TOOLS`, each name once."""
    if len(tools) > MAX_TOOLS:
        raise InvalidRequest(f"Too many tools: {len(tools)} (the limit is {MAX_TOOLS}).", param=param)
    seen: set[str] = set()
    for tool in tools:
        if tool.name in seen:
            raise InvalidRequest(f"Two tools are named {tool.name!r}; tool names must be unique.", param=param)
        seen.add(tool.name)


def check_choice(choice: ToolChoice, tools: Sequence[ToolSpec], *, param: str) -> None:
    """A named tool choice must name an offered tool; ``required`` needs some tool."""
    names = [tool.name for tool in tools]
    if choice.mode == "function" and choice.name not in names:
        raise InvalidRequest(
            f"The tool choice names {choice.name!r}, which is not one of the offered tools "
            f"({', '.join(names) or 'none'}).",
            param=param,
        )
    if choice.mode == "required" and not tools:
        raise InvalidRequest("The tool choice requires a tool call, but no tool is offered.", param=param)


def check_json_schema(schema: Any, *, param: str, what: str) -> None:
    """``schema`` must be a JSON Schema object its own meta-schema accepts."""
    if not isinstance(schema, dict):
        raise InvalidRequest(f"{what} must be a JSON Schema object.", param=param)
    from jsonschema import SchemaError, validators  # here: ~40 ms a cold start without tools need not pay

    try:
        validators.validator_for(schema).check_schema(schema)
    except SchemaError as error:
        raise InvalidRequest(f"{what} is not a valid JSON Schema: {error.message[:300]}", param=param) from None
