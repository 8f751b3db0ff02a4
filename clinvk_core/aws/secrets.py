"""Gateway keys and backend credentials from one Secrets Manager secret, applied to the settings at cold start.

On Lambda, everything secret lives in one JSON secret whose ARN is ``CLINVK_SECRET_ARN``;
``get_settings()`` reads it once per cold start (its result is cached). Locally the same settings come
from ``CLINVK_*`` variables and the CLIs' own logins. The secret's shape (docs/deploy.md)::

    {"api_keys": ["gateway key", "sha256:<hex>"],
     "claude": {"api_key": "...", "base_url": "https://..."},
     "codex":  {"login": {...auth.json...}},
     "gemini": {"login": {...oauth_creds.json...}}}

A secret that cannot be read or is malformed stops the cold start (fail closed: its gateway keys are
unknown). An enabled backend the secret gives no credentials for is switched off with a logged error,
and the others are served. Messages name the problem, never a value from the secret.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from clinvk_core.aws.logins import cli_environment, login_files, write_if_absent
from clinvk_core.config import BACKEND_NAMES, BackendName, Settings

log = logging.getLogger("clinvk")

_ARN_REGION = re.compile(r"^arn:aws[a-z-]*:secretsmanager:([a-z0-9-]+):")
_SHOWABLE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")


class SecretError(RuntimeError):
    """The secret cannot be used. The message names the problem and never carries the secret's content."""


class BackendCredentials(BaseModel):
    """One backend's entry: an upstream (base URL and/or key), or the CLI's own login file."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    base_url: str | None = None
    api_key: SecretStr | None = None
    login: dict[str, Any] | None = Field(default=None, repr=False)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> BackendCredentials:
        # A login is the CLI's normal home; an upstream moves the CLI to an isolated one, away from it.
        if self.login is not None and (self.base_url or self.api_key):
            raise ValueError("give either login or base_url/api_key, not both")
        return self


class SecretDocument(BaseModel):
    """The whole secret: the gateway's own API keys and each backend's credentials."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    api_keys: list[SecretStr] = Field(default_factory=list)
    claude: BackendCredentials | None = None
    codex: BackendCredentials | None = None
    gemini: BackendCredentials | None = None

    def backend(self, name: BackendName) -> BackendCredentials | None:
        entry: BackendCredentials | None = getattr(self, name)
        return entry


def apply_secret(settings: Settings, environ: Mapping[str, str] | None = None) -> Settings:
    """The settings with the secret's values in (they win over the environment's), login files written."""
    arn = settings.secret_arn
    if not arn:
        return settings
    document = parse_secret(read_secret(arn), arn)
    env = os.environ if environ is None else environ
    updates: dict[str, Any] = {}
    if document.api_keys:
        updates["api_keys"] = list(document.api_keys)
    for name in BACKEND_NAMES:
        entry = document.backend(name)
        if entry is None:
            continue
        if entry.base_url:
            updates[f"{name}_base_url"] = entry.base_url
        if entry.api_key:
            updates[f"{name}_api_key"] = entry.api_key
        if entry.login is not None:
            for path, content in login_files(name, cli_environment(name, settings, env), entry.login).items():
                if write_if_absent(path, content):
                    log.info("clinvk: wrote the %s login file %s from the secret", name, path)
    applied = settings.model_copy(update=updates)
    missing = [name for name in applied.backends if not _has_credentials(applied, document, name)]
    for name in missing:
        log.error(
            "clinvk: the secret %s has no credentials for the %s backend (no login, base_url or api_key); "
            "%s is switched off on this instance. Add a %r entry to the secret, or leave %s out of CLINVK_BACKENDS.",
            arn, name, name, name, name,
        )  # fmt: skip
    if missing:
        applied = applied.model_copy(update={"backends": [b for b in applied.backends if b not in missing]})
    return applied


def read_secret(arn: str) -> str:
    """The secret's string value, fetched with a client made only now (boto3 costs cold-start time)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    match = _ARN_REGION.match(arn)
    client = boto3.client(
        "secretsmanager",
        region_name=match.group(1) if match else None,
        config=Config(connect_timeout=3, read_timeout=5, retries={"max_attempts": 3, "mode": "standard"}),
    )
    try:
        with _botocore_quiet():
            response = client.get_secret_value(SecretId=arn)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "an error")
        raise SecretError(_client_error(arn, code)) from None
    except BotoCoreError as error:
        raise SecretError(f"Could not read the secret {arn}: {error}") from None
    if "SecretString" not in response:
        raise SecretError(f"The secret {arn} holds binary data; store the JSON document as its secret string.")
    return response["SecretString"]


@contextlib.contextmanager
def _botocore_quiet() -> Iterator[None]:
    """botocore logs whole response bodies (here: the secret) at DEBUG; not during this one call."""
    logger = logging.getLogger("botocore")
    level = logger.level
    logger.setLevel(max(logging.INFO, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        logger.setLevel(level)


def parse_secret(text: str, arn: str) -> SecretDocument:
    """The secret's JSON document, validated; SecretError naming what is wrong (never a value) if not."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise SecretError(f"The secret {arn} is not valid JSON (line {error.lineno}, column {error.colno}).") from None
    if not isinstance(data, dict):
        raise SecretError(f"The secret {arn} must be a JSON object, not a JSON {type(data).__name__}.")
    try:
        return SecretDocument.model_validate(data)
    except ValidationError as error:
        raise SecretError(f"The secret {arn} is malformed: {_describe(error)}.") from None


def _has_credentials(settings: Settings, document: SecretDocument, name: BackendName) -> bool:
    entry = document.backend(name)
    return settings.upstream_for(name).configured or (entry is not None and entry.login is not None)


def _describe(error: ValidationError) -> str:
    """Where and what, from pydantic's errors without their input; unusual key names stay unnamed."""
    problems = []
    for item in error.errors(include_input=False, include_url=False):
        where = ".".join(_key(part) for part in item["loc"]) or "the document"
        problems.append(f"{where}: {item['msg']}")
    return "; ".join(problems)


def _key(part: int | str) -> str:
    if isinstance(part, int):
        return f"[{part}]"
    return part if _SHOWABLE_KEY.match(part) else "<a key>"


def _client_error(arn: str, code: str) -> str:
    if code == "ResourceNotFoundException":
        return f"The secret {arn} does not exist (check CLINVK_SECRET_ARN, the stack's SecretArn parameter)."
    if code == "AccessDeniedException":
        return f"Not allowed to read the secret {arn}: the function's role needs secretsmanager:GetSecretValue on it."
    if code == "DecryptionFailure":
        return f"The secret {arn} could not be decrypted: the function's role needs kms:Decrypt on its KMS key."
    return f"Could not read the secret {arn}: {code}."
