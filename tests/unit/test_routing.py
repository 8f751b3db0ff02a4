"""Model names -> backends (``clinvk_core.routing.resolve``)."""

from __future__ import annotations

import pytest

from clinvk_core.config import BackendName
from clinvk_core.errors import ModelNotFound
from clinvk_core.routing import Route, resolve

DEFAULTS: dict[BackendName, str | None] = {"claude": "cfg-claude-model", "codex": None, "gemini": "gemini-2.5-pro"}


def default_model(backend: BackendName) -> str | None:
    return DEFAULTS[backend]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("claude", Route("claude", "cfg-claude-model")),
        ("codex", Route("codex", None)),  # None: the CLI's own default, never "codex"
        ("gemini", Route("gemini", "gemini-2.5-pro")),
        ("claude/sonnet", Route("claude", "sonnet")),
        ("claude/claude-haiku-4-5", Route("claude", "claude-haiku-4-5")),
        ("codex/gpt-5.5", Route("codex", "gpt-5.5")),
        ("gemini/gemini-2.5-pro", Route("gemini", "gemini-2.5-pro")),
        ("claude-sonnet-4-5", Route("claude", "claude-sonnet-4-5")),
        ("gpt-5.5", Route("codex", "gpt-5.5")),
        ("o4-mini", Route("codex", "o4-mini")),
        ("o3", Route("codex", "o3")),
        ("o1-preview", Route("codex", "o1-preview")),
        ("codex-mini", Route("codex", "codex-mini")),
        ("gemini-2.5-pro", Route("gemini", "gemini-2.5-pro")),
    ],
)
def test_routes(name: str, expected: Route) -> None:
    assert resolve(name, default_model) == expected


@pytest.mark.parametrize("backend", ["claude", "codex", "gemini"])
def test_bare_backend_name_is_never_passed_as_the_model(backend: BackendName) -> None:
    asked: list[str] = []

    def remember(name: BackendName) -> str | None:
        asked.append(name)
        return None

    route = resolve(backend, remember)
    assert asked == [backend]
    assert route == Route(backend, None)
    assert route.model != backend


@pytest.mark.parametrize(
    "name",
    # A NUL or a lone surrogate (valid in JSON escapes) cannot reach a CLI's argv.
    ["claude/", "codex/", "gemini/ ", "llama-3", "", "Claude", "mistral/large", "gpt4", "/sonnet", "claude/x\x00",
     "gpt-\ud800"],
)  # fmt: skip
def test_unknown_models_are_404_model_not_found(name: str) -> None:
    with pytest.raises(ModelNotFound) as caught:
        resolve(name, default_model)
    error = caught.value
    assert error.status == 404
    assert error.type == "invalid_request_error"
    assert error.code == "model_not_found"
    assert error.param == "model"
    for valid in ("claude", "codex", "gemini"):
        assert valid in error.message
    assert repr(name) in error.message
