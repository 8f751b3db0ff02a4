"""A Lambda cold start in-process: the handler modules imported afresh under chosen ``CLINVK_*`` settings."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator, Mapping
from types import ModuleType

import pytest

from clinvk_core.config import get_settings
from clinvk_core.gateway import get_gateway
from clinvk_core.store import get_store

from .conftest import HANDLER_MODULES


def forget_handlers() -> None:
    """Drop what a cold start caches, so the next import reads the environment again."""
    get_settings.cache_clear()
    get_gateway.cache_clear()
    get_store.cache_clear()
    for name in HANDLER_MODULES:
        sys.modules.pop(name, None)


@contextlib.contextmanager
def cold_start(settings: Mapping[str, str]) -> Iterator[dict[str, ModuleType]]:
    """The handler modules by name, imported with exactly ``settings`` as the CLINVK_* environment.

    The environment is patched only during the import (settings are read at cold start), and the
    modules are forgotten afterwards so that later imports start cold again. Nothing is kept warm
    unless ``settings`` say so: the stand-in CLIs speak no warm protocol.
    """
    settings = {"CLINVK_WARM_BACKENDS": ""} | dict(settings)
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("CLINVK_"):
                patch.delenv(name)
        for name, value in settings.items():
            patch.setenv(name, value)
        forget_handlers()
        try:
            modules = {name: importlib.import_module(name) for name in HANDLER_MODULES}
        except BaseException:
            forget_handlers()  # a failed cold start leaves nothing half-imported behind
            raise
    try:
        yield modules
    finally:
        forget_handlers()
