"""GET /openai/v1/models and /openai/v1/models/{model} (any routable name, ``claude/sonnet`` too)."""

from mangum import Mangum

from clinvk_core.gateway import get_gateway
from clinvk_core.openai.models import list_models, retrieve_model
from clinvk_core.openai.schema import Model, ModelList
from clinvk_core.web import create_app

gateway = get_gateway()  # cold start: find the CLIs once
app = create_app("clinvk models")


@app.get("/openai/v1/models")
async def models() -> ModelList:
    return list_models(gateway)


@app.get("/openai/v1/models/{model:path}")  # BACKEND/MODEL ids hold a slash
async def model(model: str) -> Model:
    return retrieve_model(gateway, model)


handler = Mangum(app, lifespan="off")
