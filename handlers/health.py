"""GET /health: liveness and the backends this instance can serve (the Web Adapter's readiness check)."""

from mangum import Mangum

from clinvk_core.config import BACKEND_NAMES
from clinvk_core.gateway import get_gateway
from clinvk_core.web import create_app

gateway = get_gateway()
app = create_app("clinvk health")


@app.get("/health")
async def health() -> dict[str, object]:
    return {
        "status": "ok",
        "backends": {name: gateway.unavailable_reason(name) or "available" for name in BACKEND_NAMES},
    }


handler = Mangum(app, lifespan="off")
