"""What API Gateway and Lambda hand a function: the REST API proxy event and the context object."""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

STAGE = "local"


@dataclass
class LambdaContext:
    """The attributes and the one method of Lambda's context object that handlers use."""

    function_name: str
    timeout: float
    memory_limit_in_mb: int = 1024
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _deadline: float = field(init=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout
        self.deadline_ms = int((time.time() + self.timeout) * 1000)  # epoch ms, as the Web Adapter forwards it
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{self.function_name}"
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "local"
        self.function_version = "$LATEST"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def rest_api_event(
    *,
    method: str,
    path: str,
    resource: str,
    path_parameters: dict[str, str],
    query_string: str,
    headers: list[tuple[str, str]],
    body: bytes,
    source_ip: str,
) -> dict[str, Any]:
    """An API Gateway REST API (v1) Lambda proxy integration event."""
    multi_headers: dict[str, list[str]] = {}
    for name, value in headers:
        multi_headers.setdefault(name, []).append(value)
    multi_query: dict[str, list[str]] = {}
    for name, value in parse_qsl(query_string, keep_blank_values=True):
        multi_query.setdefault(name, []).append(value)
    try:
        text, is_base64 = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, is_base64 = base64.b64encode(body).decode("ascii"), True
    now = time.time()
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": {name: values[-1] for name, values in multi_headers.items()} or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": {name: values[-1] for name, values in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/{STAGE}{path}",
            "stage": STAGE,
            "requestId": str(uuid.uuid4()),
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "requestTimeEpoch": int(now * 1000),
            "protocol": "HTTP/1.1",
            "identity": {"sourceIp": source_ip, "userAgent": multi_headers.get("user-agent", [""])[-1]},
        },
        "body": text if body else None,
        "isBase64Encoded": is_base64,
    }


def proxy_result(result: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """(status, headers, body) from a Lambda proxy integration result."""
    headers: list[tuple[bytes, bytes]] = []
    for name, value in (result.get("headers") or {}).items():
        headers.append((name.lower().encode(), str(value).encode()))
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((name.lower().encode(), str(v).encode()) for v in values)
    raw = result.get("body") or ""
    body = base64.b64decode(raw) if result.get("isBase64Encoded") else raw.encode("utf-8")
    return int(result.get("statusCode", 200)), headers, body
