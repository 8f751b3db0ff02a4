"""Model names -> backends (DESIGN "Models -> backends")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from clinvk_core.config import BACKEND_NAMES, BackendName
from clinvk_core.conversation import valid_unicode
from clinvk_core.errors import ModelNotFound

# Vendor model ids route by prefix and are passed to the CLI unchanged.
VENDOR_PREFIXES: tuple[tuple[str, BackendName], ...] = (
    ("claude-", "claude"),
    ("gpt-", "codex"),
    ("o1", "codex"),
    ("o3", "codex"),
    ("o4", "codex"),
    ("codex-", "codex"),
    ("gemini-", "gemini"),
)

_BY_NAME: dict[str, BackendName] = {name: name for name in BACKEND_NAMES}


@dataclass(frozen=True)
class Route:
    """Which backend serves a model name, and the model to pass to its CLI (None: the CLI's default)."""

    backend: BackendName
    model: str | None


def resolve(name: str, default_model: Callable[[BackendName], str | None]) -> Route:
    """The route for a requested model name, or :class:`ModelNotFound`."""
    if valid_unicode(name) != name:  # a NUL or a lone surrogate: no CLI's argv can hold it
        raise _not_found(name)
    prefix, slash, model = name.partition("/")
    backend = _BY_NAME.get(prefix)
    if backend is not None:
        if not slash:
            return Route(backend, default_model(backend))
        if model.strip():
            return Route(backend, model)
    for prefix, owner in VENDOR_PREFIXES:
        if name.startswith(prefix):
            return Route(owner, name)
    raise _not_found(name)


def _not_found(name: str) -> ModelNotFound:
    return ModelNotFound(
        f"The model {name!r} does not exist. Use one of: {', '.join(BACKEND_NAMES)}; "
        "BACKEND/MODEL (e.g. claude/sonnet, codex/gpt-5.5, gemini/gemini-2.5-pro); "
        "or a vendor model id (claude-*, gpt-*, o1*, o3*, o4*, codex-*, gemini-*)."
    )
