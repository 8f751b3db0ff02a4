"""GET /health: liveness and per-backend availability.

Served by the health function, and by the chat app too: inside the streaming image the Lambda Web
Adapter checks readiness on this path of the app it fronts.
"""

from __future__ import annotations

from fastapi import APIRouter

from clinvk_core.config import BACKEND_NAMES
from clinvk_core.gateway import Gateway


def health_router(gateway: Gateway) -> APIRouter:
    router = APIRouter()

    @router.get("/health")
    async def health() -> dict[str, object]:
        return {
            "status": "ok",
            "backends": {name: gateway.unavailable_reason(name) or "available" for name in BACKEND_NAMES},
            "warm": gateway.warm_status(),
        }

    return router
