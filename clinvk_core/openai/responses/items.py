"""A request's ``input`` as checked items: what the turn is built from, and what is stored and listed.

Items are messages (roles user, assistant, system, developer; text and image parts), ``function_call``
items (calls the model made, sent back by the client) and ``function_call_output`` items. ``reasoning``
items, which clients send back from earlier outputs, are dropped: no CLI can take a model's earlier
reasoning back. Anything else is a 400 naming the item.

:func:`stored` gives an item's stored form, the shape ``GET /responses/{id}/input_items`` lists: every
item with an id (the client's, or a new one), text and image parts in their ``input_*`` form for the
user's side and ``output_text`` for the assistant's.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from clinvk_core.errors import InvalidRequest
from clinvk_core.openai.responses.schema import (
    ContentPart,
    FunctionCallItem,
    FunctionCallOutputItem,
    Item,
    MessageItem,
)
from clinvk_core.web.errors import invalid_at

_MODELS: dict[str, type[Item]] = {
    "message": MessageItem,
    "function_call": FunctionCallItem,
    "function_call_output": FunctionCallOutputItem,
}
SKIPPED_TYPES = frozenset({"reasoning"})
TEXT_PARTS = frozenset({"input_text", "output_text"})
IMAGE_DETAILS = frozenset({"low", "high", "auto", "original"})


def new_id(prefix: str) -> str:
    """A fresh id in OpenAI's style: ``resp_...``, ``msg_...``, ``fc_...``."""
    return f"{prefix}_{secrets.token_hex(24)}"


def printable(value: Any) -> Any:
    """``value`` with its strings' lone surrogates (which JSON's escapes can bring, and UTF-8 cannot hold) made
    U+FFFD, so that it can be answered, streamed and stored."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, dict):
        return {printable(key): printable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [printable(item) for item in value]
    return value


Located = tuple[str, Item]
"""An item and where it came from, for error messages: ``input[3]``."""


def parse(raw: str | Sequence[dict[str, Any]], *, param: str) -> list[Located]:
    """The items of ``raw`` (a string is one user message), each checked; 400 naming the first bad one."""
    if isinstance(raw, str):
        return [(param, MessageItem(role="user", content=raw))]
    items: list[Located] = []
    for index, data in enumerate(raw):
        kind = data.get("type", "message")
        kind = kind if isinstance(kind, str) else repr(kind)
        if kind in SKIPPED_TYPES:
            continue
        model = _MODELS.get(kind)
        if model is None:
            raise InvalidRequest(
                f"Input items of type {kind[:60]!r} are not supported ({param}[{index}]): send messages, "
                "function_call and function_call_output items.",
                param=f"{param}[{index}].type",
            )
        try:
            item = model.model_validate(data)
        except ValidationError as error:
            raise invalid_at(error, param, index) from None
        _check_parts(item, f"{param}[{index}]")
        items.append((f"{param}[{index}]", item))
    return items


def _check_parts(item: Item, param: str) -> None:
    """Text parts anywhere, refusals from the assistant, images from the user; nothing else (files, audio)."""
    if isinstance(item, FunctionCallItem):
        return
    content = item.output if isinstance(item, FunctionCallOutputItem) else item.content
    where = "output" if isinstance(item, FunctionCallOutputItem) else "content"
    role = item.role if isinstance(item, MessageItem) else None
    for index, part in enumerate([] if isinstance(content, str) else content):
        part_param = f"{param}.{where}[{index}]"
        if part.type in TEXT_PARTS:
            _require(part.text, f"{part_param}.text")
        elif part.type == "refusal" and role == "assistant":
            _require(part.refusal, f"{part_param}.refusal")
        elif part.type == "input_image" and role == "user":
            if part.image_url is None:
                raise InvalidRequest(
                    f"{part_param}: clinvk takes images as 'image_url' (a data: URL, or http(s) where this "
                    "gateway fetches images), not as file ids.",
                    param=f"{part_param}.image_url",
                )
            if part.detail is not None and part.detail not in IMAGE_DETAILS:
                raise InvalidRequest(
                    f"Invalid value for '{part_param}.detail': use one of {', '.join(sorted(IMAGE_DETAILS))}.",
                    param=f"{part_param}.detail",
                )
        else:
            kinds = "input_text and input_image parts" if role == "user" else "text parts"
            raise InvalidRequest(
                f"Content parts of type {part.type[:60]!r} are not supported here ({part_param}); send {kinds}.",
                param=f"{part_param}.type",
            )


def _require(value: str | None, param: str) -> None:
    if value is None:
        raise InvalidRequest(f"Missing required parameter: '{param}'.", param=param)


def part_text(part: ContentPart) -> str:
    """A text part's text, or a refusal's."""
    return part.text if part.text is not None else part.refusal or ""


def stored(item: Item) -> dict[str, Any]:
    """The item as it is stored and listed, with an id."""
    if isinstance(item, FunctionCallItem):
        call = {"id": item.id or new_id("fc"), "type": "function_call", "status": "completed",
                "call_id": item.call_id, "name": item.name, "arguments": item.arguments}  # fmt: skip
        return call | ({"namespace": item.namespace} if item.namespace else {})
    if isinstance(item, FunctionCallOutputItem):
        output: str | list[dict[str, Any]] = (
            item.output
            if isinstance(item.output, str)
            else [{"type": "input_text", "text": part_text(part)} for part in item.output]
        )
        return {"id": item.id or new_id("fco"), "type": "function_call_output", "status": "completed",
                "call_id": item.call_id, "output": output}  # fmt: skip
    content = [ContentPart(type="input_text", text=item.content)] if isinstance(item.content, str) else item.content
    if item.role == "assistant":
        parts = [{"type": "output_text", "text": part_text(part), "annotations": []} for part in content]
    else:
        parts = [_input_part(part) for part in content]
    return {"id": item.id or new_id("msg"), "type": "message", "role": item.role, "status": "completed",
            "content": parts}  # fmt: skip


def _input_part(part: ContentPart) -> dict[str, Any]:
    if part.type == "input_image":
        return {"type": "input_image", "image_url": part.image_url, "detail": part.detail or "auto"}
    return {"type": "input_text", "text": part_text(part)}
