"""GET /health: liveness and the backends this instance can serve."""

from mangum import Mangum

from clinvk_core.gateway import get_gateway
from clinvk_core.web import create_app
from clinvk_core.web.health import health_router

gateway = get_gateway()
app = create_app("clinvk health")
app.include_router(health_router(gateway))

handler = Mangum(app, lifespan="off")
