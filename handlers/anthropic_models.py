"""GET /anthropic/v1/models and /anthropic/v1/models/{model} (any routable name, ``claude/sonnet`` too)."""

from mangum import Mangum

from clinvk_core.anthropic.errors import error_response
from clinvk_core.anthropic.models import list_models, retrieve_model
from clinvk_core.anthropic.schema import ModelInfo, ModelList
from clinvk_core.gateway import get_gateway
from clinvk_core.web import create_app

gateway = get_gateway()  # cold start: find the CLIs once
app = create_app("clinvk anthropic models", error_response)


@app.get("/anthropic/v1/models")
async def models(limit: int = 20, after_id: str | None = None, before_id: str | None = None) -> ModelList:
    return list_models(gateway, limit=limit, after_id=after_id, before_id=before_id)


@app.get("/anthropic/v1/models/{model:path}")  # BACKEND/MODEL ids hold a slash
async def model(model: str) -> ModelInfo:
    return retrieve_model(gateway, model)


handler = Mangum(app, lifespan="off")
