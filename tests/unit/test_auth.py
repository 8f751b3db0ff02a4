"""Gateway API keys (``clinvk_core.web.auth``): which requests get in, and how configured keys are read."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from clinvk_core.web.auth import ApiKeyAuth, KeyRing, presented_key

CLEAR = "clear-key-0123456789"
HASHED = "hashed-key-9876543210"
DIGEST = hashlib.sha256(HASHED.encode()).hexdigest()


async def ok_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"in"})


def client(*keys: str) -> TestClient:
    return TestClient(ApiKeyAuth(ok_app, KeyRing(keys)))


def test_clear_and_hashed_keys_are_accepted() -> None:
    ring = KeyRing([CLEAR, f"sha256:{DIGEST}"])
    assert ring.accepts(CLEAR)
    assert ring.accepts(HASHED)
    assert not ring.accepts(f"sha256:{DIGEST}")  # the stored hash is not a key
    assert not ring.accepts(DIGEST)
    assert not ring.accepts(CLEAR.upper())


def test_hash_prefix_and_digits_in_any_case() -> None:
    assert KeyRing([f"SHA256:{DIGEST.upper()}"]).accepts(HASHED)


@pytest.mark.parametrize(
    "entry",
    ["sha256:", "sha256:abc", f"sha256:{DIGEST}0", f"sha256:{DIGEST[:-1]}g", f"sha256: {DIGEST}", f"Sha256:{DIGEST}x"],
    ids=["empty", "short", "long", "not-hex", "space", "mixed-case-prefix-long"],
)
def test_a_malformed_hash_stops_the_start(entry: str) -> None:
    # A fixed message: the entry (perhaps a real key someone meant to hash) is not repeated.
    message = "API keys: 'sha256:' must be followed by the 64 hex digits of the key's SHA-256 digest"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        KeyRing([CLEAR, entry])


def test_no_keys_means_no_auth() -> None:
    assert not KeyRing([])
    assert not KeyRing(["", ""])
    assert client().get("/anything").text == "in"


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ({b"authorization": b"Bearer k1"}, "k1"),
        ({b"authorization": b"bearer  k1 "}, "k1"),
        ({b"x-api-key": b" k2 "}, "k2"),
        ({b"authorization": b"Bearer k1", b"x-api-key": b"k2"}, "k1"),
        ({b"authorization": b"Basic azE=", b"x-api-key": b"k2"}, "k2"),
        ({b"authorization": b"Bearer", b"x-api-key": b"k2"}, "k2"),
        ({b"authorization": b"k1"}, ""),
        ({b"api-key": b"k1"}, ""),
        ({}, ""),
    ],
)
def test_presented_key(headers: dict[bytes, bytes], key: str) -> None:
    assert presented_key(headers) == key


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {CLEAR}"},
        {"x-api-key": CLEAR},
        {"Authorization": f"Bearer {HASHED}"},
        {"x-api-key": HASHED},
    ],
)
def test_valid_keys_get_in(headers: dict[str, str]) -> None:
    response = client(CLEAR, f"sha256:{DIGEST}").get("/openai/v1/models", headers=headers)
    assert (response.status_code, response.text) == (200, "in")


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "Missing API key"),
        ({"x-api-key": ""}, "Missing API key"),
        ({"api-key": CLEAR}, "Missing API key"),
        ({"Authorization": f"Basic {CLEAR}"}, "Missing API key"),
        ({"Authorization": f"Bearer {CLEAR}-"}, "Incorrect API key"),
        ({"x-api-key": f"sha256:{DIGEST}"}, "Incorrect API key"),
    ],
)
def test_anything_else_is_a_401_that_names_no_key(headers: dict[str, str], message: str) -> None:
    response = client(CLEAR, f"sha256:{DIGEST}").post("/openai/v1/chat/completions", headers=headers)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error == {
        "message": error["message"],
        "type": "authentication_error",
        "param": None,
        "code": "invalid_api_key",
    }
    assert message in error["message"]
    for secret in (CLEAR, HASHED, DIGEST):
        assert secret not in response.text


def test_health_is_open() -> None:
    assert client(CLEAR).get("/health").text == "in"
    assert client(CLEAR).get("/health/x").status_code == 401
