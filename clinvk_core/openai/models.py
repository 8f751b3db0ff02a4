"""GET /models and /models/{model}: the backends this instance can serve."""

from __future__ import annotations

from clinvk_core.errors import ModelNotFound
from clinvk_core.gateway import Gateway
from clinvk_core.openai.schema import Model, ModelList


def list_models(gateway: Gateway) -> ModelList:
    return ModelList(data=[Model(id=name) for name in gateway.models])


def retrieve_model(gateway: Gateway, model: str) -> Model:
    """Any routable name whose backend is available (``claude``, ``claude-sonnet-4-5``...); else 404."""
    route = gateway.route(model)
    reason = gateway.unavailable_reason(route.backend)
    if reason is not None:
        raise ModelNotFound(f"The model {model!r} is not available: {reason}")
    return Model(id=model)
