"""``clinvk-local``: serve template.yaml's routes on localhost, optionally against the fake upstream."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import uvicorn

from clinvk_core.config import PROJECT_ROOT

log = logging.getLogger("clinvk.local")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="clinvk-local", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--template", type=Path, default=PROJECT_ROOT / "template.yaml")
    parser.add_argument(
        "--fake-upstream",
        action="store_true",
        help="start the scripted fake provider on loopback and point all three CLIs at it (offline)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("mangum").setLevel(logging.WARNING)  # clinvk's access log already has every request

    if args.fake_upstream:
        from clinvk_core.testing.fake_upstream import FakeUpstream

        fake = FakeUpstream().start()
        os.environ |= fake_upstream_settings(fake.url)
        log.info("fake upstream on %s", fake.url)

    # Imported only now: the handlers read their settings at import, like a Lambda cold start.
    from clinvk_core.emulator.server import Emulator
    from clinvk_core.emulator.template import functions, load_template

    emulator = Emulator(functions(load_template(args.template)))
    for route in emulator.routes:
        log.info("%-4s http://%s:%d%s", route.method, args.host, args.port, route.path)
    uvicorn.run(emulator, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=3)


def fake_upstream_settings(url: str) -> dict[str, str]:
    """The CLINVK_* settings that point every backend at a fake provider at ``url``."""
    return {
        "CLINVK_CLAUDE_BASE_URL": url,
        "CLINVK_CLAUDE_API_KEY": "sk-ant-fake",
        "CLINVK_CODEX_BASE_URL": f"{url}/v1",
        "CLINVK_CODEX_API_KEY": "sk-fake",
        "CLINVK_GEMINI_BASE_URL": url,
        "CLINVK_GEMINI_API_KEY": "fake-gemini-key",
    }
