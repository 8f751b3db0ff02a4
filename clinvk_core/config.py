"""Settings, read once from ``CLINVK_*`` environment variables (pydantic-settings).

Every setting is documented in ``docs/configuration.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

BackendName = Literal["claude", "codex", "gemini"]
BACKEND_NAMES: tuple[BackendName, ...] = ("claude", "codex", "gemini")
WARM_BY_DEFAULT: tuple[BackendName, ...] = ("claude", "codex")
ToolMode = Literal["chat", "read-only", "agent"]
ImageUrlPolicy = Literal["off", "public", "any"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _default_state_dir() -> Path:
    return Path.home() / ".local" / "state" / "clinvk"


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """Gateway configuration; unset upstreams mean "use the CLI's own login and config"."""

    model_config = SettingsConfigDict(env_prefix="CLINVK_", extra="ignore", frozen=True)

    claude_base_url: str | None = None
    claude_api_key: SecretStr | None = None
    codex_base_url: str | None = None
    codex_api_key: SecretStr | None = None
    gemini_base_url: str | None = None
    gemini_api_key: SecretStr | None = None

    # Model passed to the CLI when the request names only the backend; None = the CLI's own default.
    claude_model: str | None = None
    codex_model: str | None = None
    # gemini always gets -m: without it the CLI makes an extra router call per request.
    gemini_model: str = "gemini-2.5-pro"

    backends: Annotated[list[BackendName], NoDecode] = Field(default_factory=lambda: list(BACKEND_NAMES))
    # CLIs started ahead of requests (docs/performance.md): which backends, how many claude processes
    # wait per instance, and after how many sessions a long-lived CLI is replaced.
    warm_backends: Annotated[list[BackendName], NoDecode] = Field(default_factory=lambda: list(WARM_BY_DEFAULT))
    warm_size: int = Field(default=2, ge=1)
    warm_max_sessions: int = Field(default=100, ge=1)
    warm_start_seconds: float = Field(default=8.0, ge=0)  # start-up waits this long at most for the pools
    bin_dir: Path | None = None
    state_dir: Path = Field(default_factory=_default_state_dir)
    tool_mode: ToolMode = "chat"

    timeout_seconds: float = Field(default=300.0, ge=1)
    max_concurrency: int = Field(default=16, ge=1)
    max_request_bytes: int = Field(default=6 * 1024 * 1024, ge=1024)  # Lambda's payload limit
    max_messages: int = Field(default=2000, ge=1)
    max_prompt_chars: int = Field(default=2_000_000, ge=1000)
    keepalive_seconds: float = Field(default=15.0, gt=0)
    # Images: data: URLs always; http(s) URLs fetched only as allowed ("public": https, public addresses).
    image_urls: ImageUrlPolicy = "off"
    max_image_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    max_images: int = Field(default=20, ge=0)
    image_fetch_timeout_seconds: float = Field(default=10.0, gt=0)
    # The CLIs' own defaults retry for minutes; the client's OpenAI SDK retries 429/5xx itself.
    upstream_max_retries: int = Field(default=0, ge=0)

    # Stored Responses API responses (previous_response_id): SQLite under state_dir, or a DynamoDB table.
    response_store: Literal["sqlite", "dynamodb"] = "sqlite"
    response_table: str | None = None  # the DynamoDB table, when response_store is dynamodb
    response_ttl_days: float = Field(default=30.0, gt=0)

    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    # AWS Secrets Manager secret (JSON) with gateway keys and backend credentials; read at cold start.
    secret_arn: str | None = None

    _split_lists = field_validator("backends", "warm_backends", "api_keys", mode="before")(_split_commas)

    def model_for(self, backend: BackendName) -> str | None:
        return {"claude": self.claude_model, "codex": self.codex_model, "gemini": self.gemini_model}[backend]

    def upstream_for(self, backend: BackendName) -> Upstream:
        base_url, api_key = {
            "claude": (self.claude_base_url, self.claude_api_key),
            "codex": (self.codex_base_url, self.codex_api_key),
            "gemini": (self.gemini_base_url, self.gemini_api_key),
        }[backend]
        return Upstream(base_url=base_url, api_key=api_key.get_secret_value() if api_key else None)


@dataclass(frozen=True)
class Upstream:
    """Where one backend's CLI should send its model calls; both unset = the CLI's own login."""

    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)

    @property
    def configured(self) -> bool:
        return bool(self.base_url or self.api_key)


@cache
def get_settings() -> Settings:
    """The process-wide settings, read once (at cold start on Lambda), with the secret applied if one is set."""
    settings = Settings()
    if not settings.secret_arn:
        return settings
    # Imported only here: boto3 costs cold-start time, and only deployments with a secret need it.
    from clinvk_core.aws.secrets import apply_secret

    return apply_secret(settings)
