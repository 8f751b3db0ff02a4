"""POST /openai/v1/chat/completions (buffered or streamed)."""

from fastapi import Request, Response
from mangum import Mangum

from clinvk_core.gateway import get_gateway
from clinvk_core.openai.chat import chat_completion
from clinvk_core.openai.schema import ChatCompletionRequest
from clinvk_core.web import create_app
from clinvk_core.web.health import health_router

gateway = get_gateway()  # cold start: find the CLIs, prepare their state once
app = create_app("clinvk chat completions", gateway=gateway)  # keeps CLIs warm
app.include_router(health_router(gateway))  # the Web Adapter's readiness check


@app.post("/openai/v1/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    return await chat_completion(body, request, gateway)


handler = Mangum(app, lifespan="off")
