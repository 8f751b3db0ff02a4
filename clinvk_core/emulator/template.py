"""Reads the functions and their routes out of the SAM template: the single source of truth for routes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_TIMEOUT_SECONDS = 3.0  # Lambda's own default
_HANDLER = re.compile(r"\b(handlers\.\w+)[.:](\w+)\b")


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # API Gateway path template, e.g. /openai/v1/models/{model}


@dataclass(frozen=True)
class Function:
    """One ``AWS::Serverless::Function``, as the emulator needs it."""

    name: str  # logical id
    module: str  # e.g. handlers.models
    attribute: str  # "handler" (Lambda entry) or "app" (ASGI, behind the Web Adapter)
    timeout: float
    streaming: bool  # response streaming: served through its ASGI app, bytes as produced
    routes: tuple[Route, ...]


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags (!Ref, !Sub, !GetAtt...) read as plain values."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    return {f"Fn::{suffix}" if suffix != "Ref" else "Ref": value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as file:
        data = yaml.load(file, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a CloudFormation template")
    return data


def functions(template: dict[str, Any]) -> list[Function]:
    """Every serverless function in the template, with the routes its Api events declare."""
    defaults = template.get("Globals", {}).get("Function", {})
    found = []
    for name, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties", {})
        module, attribute = handler_of(props)
        events = props.get("Events", {}).values()
        routes = tuple(
            Route(event["Properties"]["Method"].upper(), event["Properties"]["Path"])
            for event in events
            if event.get("Type") == "Api"
        )
        found.append(
            Function(
                name=name,
                module=module,
                attribute=attribute,
                timeout=float(props.get("Timeout", defaults.get("Timeout", DEFAULT_TIMEOUT_SECONDS))),
                streaming=_streams(props),
                routes=routes,
            )
        )
    return found


def handler_of(props: dict[str, Any]) -> tuple[str, str]:
    """(module, attribute) from ``Handler`` or the image's ``EntryPoint``/``Command``."""
    image = props.get("ImageConfig", {})
    words = [props.get("Handler", ""), *image.get("EntryPoint", []), *image.get("Command", [])]
    for word in words:
        if match := _HANDLER.search(str(word)):
            return match.group(1), match.group(2)
    raise ValueError(f"no handlers.* entry point in {words}")


def _streams(props: dict[str, Any]) -> bool:
    url_mode = props.get("FunctionUrlConfig", {}).get("InvokeMode")
    lwa_mode = props.get("Environment", {}).get("Variables", {}).get("AWS_LWA_INVOKE_MODE", "")
    api_modes = [e.get("Properties", {}).get("ResponseTransferMode") for e in props.get("Events", {}).values()]
    return url_mode == "RESPONSE_STREAM" or str(lwa_mode).lower() == "response_stream" or "STREAM" in api_modes
