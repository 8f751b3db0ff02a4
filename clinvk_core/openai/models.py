"""GET /models and /models/{model}: the backends this instance can serve."""

from __future__ import annotations

from clinvk_core.gateway import Gateway
from clinvk_core.openai.schema import Model, ModelList


def list_models(gateway: Gateway) -> ModelList:
    return ModelList(data=[Model(id=name) for name in gateway.models])


def retrieve_model(gateway: Gateway, model: str) -> Model:
    """Any routable name whose backend is available (``claude``, ``claude-sonnet-4-5``...); else 404."""
    gateway.available_route(model)
    return Model(id=model)
