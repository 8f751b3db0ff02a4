"""Reads the functions and their routes out of the SAM template: the single source of truth for routes.

A function's routes come from its ``Api`` events and from any ``AWS::Serverless::Api`` whose OpenAPI
``DefinitionBody`` integrates it (written out where SAM's events cannot say enough, e.g. the
streaming integration of the chat route).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_TIMEOUT_SECONDS = 3.0  # Lambda's own default
_HANDLER = re.compile(r"\b(handlers\.\w+)[.:](\w+)\b")
_OPENAPI_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch"})
_ANY_METHOD = "x-amazon-apigateway-any-method"
_INTEGRATION = "x-amazon-apigateway-integration"
_FUNCTION_ARN = re.compile(r"\$\{(\w+)\.Arn\}")  # in a Lambda integration URI written with !Sub


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
        if suffix == "GetAtt":  # `!GetAtt Resource.Attribute` is short for [Resource, Attribute]
            value = value.split(".", 1)
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
    integrated = _definition_routes(template)
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
        definition = integrated.get(name, [])
        found.append(
            Function(
                name=name,
                module=module,
                attribute=attribute,
                timeout=float(props.get("Timeout", defaults.get("Timeout", DEFAULT_TIMEOUT_SECONDS))),
                streaming=_streams(props) or any(streams for _, streams in definition),
                routes=routes + tuple(route for route, _ in definition),
            )
        )
    return found


def _definition_routes(template: dict[str, Any]) -> dict[str, list[tuple[Route, bool]]]:
    """(route, streams) of every OpenAPI operation in an Api's DefinitionBody, by the function it integrates."""
    found: dict[str, list[tuple[Route, bool]]] = {}
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") != "AWS::Serverless::Api":
            continue
        paths = (resource.get("Properties", {}).get("DefinitionBody") or {}).get("paths", {})
        for path, operations in paths.items():
            for method, operation in operations.items():
                if method not in _OPENAPI_METHODS and method != _ANY_METHOD:
                    continue  # e.g. path-level "parameters"
                integration = operation.get(_INTEGRATION, {})
                function = _integrated_function(integration.get("uri"))
                if function is not None:
                    verb = "ANY" if method == _ANY_METHOD else method.upper()
                    streams = integration.get("responseTransferMode") == "STREAM"
                    found.setdefault(function, []).append((Route(verb, path), streams))
    return found


def _integrated_function(uri: Any) -> str | None:
    """The logical id of the function in a Lambda integration URI written as ``!Sub ...${Function.Arn}...``."""
    text = uri.get("Fn::Sub") if isinstance(uri, dict) else None
    if isinstance(text, list):  # the [string, variables] form of !Sub
        text = text[0]
    match = _FUNCTION_ARN.search(text) if isinstance(text, str) else None
    return match.group(1) if match else None


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
