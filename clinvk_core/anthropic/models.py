"""GET /v1/models and /v1/models/{model}: the backends this instance can serve, in Anthropic's list format."""

from __future__ import annotations

from clinvk_core.anthropic.schema import ModelInfo, ModelList
from clinvk_core.errors import InvalidRequest
from clinvk_core.gateway import Gateway

MAX_LIMIT = 1000


def list_models(
    gateway: Gateway, *, limit: int = 20, after_id: str | None = None, before_id: str | None = None
) -> ModelList:
    """One page of the available backends (``after_id``/``before_id`` page as Anthropic's cursors do)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be between 1 and {MAX_LIMIT}.")
    names: list[str] = list(gateway.models)
    if after_id is not None:
        names = names[_position(names, after_id, "after_id") + 1 :]
        page = names[:limit]
    elif before_id is not None:
        names = names[: _position(names, before_id, "before_id")]
        page = names[-limit:]
    else:
        page = names[:limit]
    data = [_info(name, name) for name in page]
    return ModelList(data=data, has_more=len(page) < len(names), first_id=page[0] if page else None,
                     last_id=page[-1] if page else None)  # fmt: skip


def retrieve_model(gateway: Gateway, model: str) -> ModelInfo:
    """Any routable name whose backend is available (``claude``, ``claude/sonnet``, ``gemini-2.5-pro``...)."""
    return _info(model, gateway.available_route(model).backend)


def _info(model: str, backend: str) -> ModelInfo:
    return ModelInfo(id=model, display_name=model if model == backend else f"{model} ({backend} CLI)")


def _position(names: list[str], model: str, param: str) -> int:
    if model not in names:
        raise InvalidRequest(f"{param} {model[:80]!r} is not one of the listed models ({', '.join(names)}).")
    return names.index(model)
