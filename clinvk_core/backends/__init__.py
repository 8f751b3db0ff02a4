"""The CLI backends, by name. CLI-specific knowledge lives only in these modules."""

from __future__ import annotations

from clinvk_core.backends.base import Backend, BackendSettings, Invocation, OutputParser, RunPaths, RunRequest
from clinvk_core.backends.claude import Claude
from clinvk_core.backends.codex import Codex
from clinvk_core.backends.gemini import Gemini
from clinvk_core.config import BackendName

BACKENDS: dict[BackendName, Backend] = {b.name: b for b in (Claude(), Codex(), Gemini())}

__all__ = ["BACKENDS", "Backend", "BackendSettings", "Invocation", "OutputParser", "RunPaths", "RunRequest"]
