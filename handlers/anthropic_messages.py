"""POST /anthropic/v1/messages (buffered or streamed) and /anthropic/v1/messages/count_tokens."""

from fastapi import Request, Response
from mangum import Mangum

from clinvk_core.anthropic.errors import error_response
from clinvk_core.anthropic.messages import count_tokens, create_message
from clinvk_core.anthropic.schema import CountTokensRequest, MessagesRequest
from clinvk_core.gateway import get_gateway
from clinvk_core.web import create_app
from clinvk_core.web.health import health_router

gateway = get_gateway()  # cold start: find the CLIs, prepare their state once
app = create_app("clinvk anthropic messages", error_response, gateway=gateway)  # keeps CLIs warm
app.include_router(health_router(gateway))  # the Web Adapter's readiness check


@app.post("/anthropic/v1/messages")
async def messages(body: MessagesRequest, request: Request) -> Response:
    return await create_message(body, request, gateway)


@app.post("/anthropic/v1/messages/count_tokens")
async def count(body: CountTokensRequest) -> None:
    count_tokens(body, gateway)


handler = Mangum(app, lifespan="off")
