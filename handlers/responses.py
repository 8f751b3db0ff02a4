"""POST /openai/v1/responses (buffered or streamed); GET and DELETE of a stored response, and its input items."""

from typing import Any, Literal

from fastapi import Query, Request, Response
from mangum import Mangum

from clinvk_core.gateway import get_gateway
from clinvk_core.openai.responses import stored
from clinvk_core.openai.responses.create import create_response
from clinvk_core.openai.responses.schema import ResponseCreateRequest
from clinvk_core.store import get_store
from clinvk_core.web import create_app
from clinvk_core.web.auth import caller
from clinvk_core.web.health import health_router

gateway = get_gateway()  # cold start: find the CLIs, prepare their state once
store = get_store()  # opened on first use
app = create_app("clinvk responses", gateway=gateway)  # keeps CLIs warm
app.include_router(health_router(gateway))  # the Web Adapter's readiness check


@app.post("/openai/v1/responses")
async def create(body: ResponseCreateRequest, request: Request) -> Response:
    return await create_response(body, request, gateway, store)


@app.get("/openai/v1/responses/{response_id}")
def retrieve(response_id: str, request: Request, stream: bool = False) -> dict[str, Any]:
    return stored.retrieve(store, response_id, caller(request.scope), stream=stream)


@app.get("/openai/v1/responses/{response_id}/input_items")
def input_items(
    response_id: str,
    request: Request,
    limit: int = Query(20, ge=1, le=100),
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
) -> dict[str, Any]:
    return stored.input_items(store, response_id, caller(request.scope), limit=limit, order=order, after=after)


@app.delete("/openai/v1/responses/{response_id}")
def delete(response_id: str, request: Request) -> dict[str, Any]:
    return stored.delete(store, response_id, caller(request.scope))


handler = Mangum(app, lifespan="off")
