"""The tools an Anthropic request lets the model call, and its tool choice.

Claude Code changes the tool set as a conversation goes on, and the model sees the set as it stands at
the end: tools with ``defer_loading`` are offered once a ``tool_reference`` names them (in a tool result
of its tool search, or a system turn's ``tool_addition``); a system turn may also add a tool's whole
definition or remove a tool (``tool_removal``). Only custom tools, which the client runs, are supported:
Anthropic's server tools (web search, code execution...) have nothing to run them here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from clinvk_core.anthropic.schema import Tool
from clinvk_core.anthropic.schema import ToolChoice as ToolChoiceIn
from clinvk_core.conversation import ToolChoice, ToolSpec
from clinvk_core.errors import InvalidRequest
from clinvk_core.tools import check_choice, check_tool_set, tool_spec


class ToolSet:
    """The request's tools by name, and which of them the model may call now."""

    def __init__(self, tools: Sequence[Tool]) -> None:
        self._specs: dict[str, ToolSpec] = {}
        self._active: list[str] = []  # in the order the client offered them
        specs = [self._define(tool, f"tools[{i}]", active=not tool.defer_loading) for i, tool in enumerate(tools)]
        check_tool_set(specs, param="tools")

    def reference(self, name: str, param: str) -> None:
        """A ``tool_reference``: the named tool, offered so far or deferred, is offered from now on."""
        if name not in self._specs:
            raise InvalidRequest(f"{param} references the tool {name[:80]!r}, which the request does not define.")
        if name not in self._active:
            self._active.append(name)

    def change(self, kind: str, tool: dict[str, Any] | None, param: str) -> None:
        """A system turn's ``tool_addition`` or ``tool_removal`` of a ``tool_reference`` or ``tool_definition``."""
        tool = tool or {}
        if kind == "tool_addition" and tool.get("type") == "tool_definition":
            try:
                definition = Tool.model_validate(tool.get("definition"), strict=True)
            except ValidationError:
                raise InvalidRequest(f"{param}.tool.definition must be a tool (name, input_schema...).") from None
            self._define(definition, f"{param}.tool.definition", active=True)
        elif tool.get("type") == "tool_reference" and isinstance(name := tool.get("name"), str):
            if kind == "tool_addition":
                self.reference(name, param)
            elif name in self._active:
                self._active.remove(name)
        else:
            raise InvalidRequest(f"{param} must change a tool_reference (name) or add a tool_definition.")

    def offered(self) -> tuple[ToolSpec, ...]:
        return tuple(self._specs[name] for name in self._active)

    def _define(self, tool: Tool, param: str, *, active: bool) -> ToolSpec:
        if tool.type not in (None, "custom"):
            raise InvalidRequest(
                f"Tools of type {tool.type[:40]!r} are not supported ({param}): only custom tools (name, description, "
                "input_schema), which the client runs."
            )
        if tool.input_schema is None:
            raise InvalidRequest(f"Missing required parameter: '{param}.input_schema'.")
        spec = self._specs[tool.name] = tool_spec(tool.name, tool.description, tool.input_schema, param=param)
        if active and tool.name not in self._active:
            self._active.append(tool.name)
        return spec


def tool_choice(choice: ToolChoiceIn | None, tools: Sequence[ToolSpec]) -> ToolChoice | None:
    """The tool choice (None: ``none``, no tool may be called)."""
    if choice is None or choice.type == "auto":
        return ToolChoice()
    if choice.type == "none":
        return None
    if choice.type == "any":
        chosen = ToolChoice("required")
    elif choice.type == "tool" and choice.name is not None:
        chosen = ToolChoice("function", choice.name)
    else:
        raise InvalidRequest(
            'Invalid tool_choice: use {"type": "auto"}, {"type": "any"}, {"type": "none"} or '
            '{"type": "tool", "name": ...}.'
        )
    check_choice(chosen, tools, param="tool_choice")
    return chosen


def parallel_calls(choice: ToolChoiceIn | None) -> bool:
    return not (choice and choice.disable_parallel_tool_use)
