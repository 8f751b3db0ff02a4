"""The app every handler builds on: OpenAI-shaped errors, access log, API keys, body limit."""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI

from clinvk_core.config import get_settings
from clinvk_core.gateway import Gateway
from clinvk_core.openai.errors import error_response as openai_error
from clinvk_core.web.access_log import AccessLog
from clinvk_core.web.auth import ApiKeyAuth, KeyRing
from clinvk_core.web.errors import install_error_handlers
from clinvk_core.web.limits import BodyLimit
from clinvk_core.web.run_response import ErrorResponse


def create_app(title: str, error_response: ErrorResponse = openai_error, gateway: Gateway | None = None) -> FastAPI:
    """An app whose every error, its own or its middlewares', is in the shape ``error_response`` gives.

    With ``gateway``, the app runs turns: its start-up starts the CLIs kept warm (on Lambda, in the init
    phase), its shut-down stops them.
    """
    settings = get_settings()
    _configure_logging()
    lifespan = None if gateway is None else partial(_warm, gateway)
    # No redirect for a path with a stray slash: an API answers it (a 404 in its own shape), never a 307.
    app = FastAPI(
        title=title, docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan, redirect_slashes=False
    )
    install_error_handlers(app, error_response)
    # Outermost last: the access log sees every request, auth runs before the body is read.
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes, error_response=error_response)
    keys = KeyRing(key.get_secret_value() for key in settings.api_keys)
    app.add_middleware(ApiKeyAuth, keys=keys, error_response=error_response)
    app.add_middleware(AccessLog)
    return app


@asynccontextmanager
async def _warm(gateway: Gateway, app: FastAPI) -> AsyncIterator[None]:
    await gateway.start_warm(wait=gateway.settings.warm_start_seconds)
    try:
        yield
    finally:
        await gateway.stop_warm()


def _configure_logging() -> None:
    """JSON lines on stderr at INFO, unless the host (Lambda's runtime, a test) set up logging already."""
    logger = logging.getLogger("clinvk")
    logger.setLevel(logging.INFO)
    if not logging.getLogger().handlers and not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
