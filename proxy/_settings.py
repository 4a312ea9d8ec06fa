"""Settings: parsed once, from STILLROOM_* variables and an optional TOML file, then passed in."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from finetune import (
    BackendConfig,
    CanaryPolicy,
    CyclePolicy,
    GatePolicy,
    ModelPrice,
    RedactionConfig,
    RuleList,
    UpstreamKind,
)

OPENAI_BASE_URL = "https://api.openai.com/v1"


class UpstreamConfig(BaseModel):
    """A named upstream that alias targets can send to, beside ``default``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str
    """OpenAI-compatible server, including its ``/v1``: where requests go."""
    api_key: SecretStr | None = None
    """Key sent to it; without one, the caller's upstream key is sent."""
    kind: UpstreamKind = "openai"
    """``openai``: a provider that serves its own fine-tunes. ``vllm``: vLLM's OpenAI server
    with runtime LoRA; a self-hosted student is loaded on every replica before a route points
    at it. ``transformers``: ``transformers serve DIR`` serving one merged student, asked for
    by its path."""
    replicas: list[str] = []
    """[default: ``[base_url]``] Each replica's own URL, with its ``/v1``, when ``base_url`` is
    a load balancer in front of several: a student is loaded on every one."""
    api: Literal["responses", "chat"] = "responses"
    """``chat`` for a server that speaks only chat completions (many a vLLM or fine-tuned
    student host): Responses API calls routed to it go as chat completions, and the answer,
    streamed or not, comes back as Responses objects and events."""

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _http(value)

    @field_validator("replicas")
    @classmethod
    def _http_urls(cls, value: list[str]) -> list[str]:
        return [_http(url) for url in value]

    @property
    def replica_urls(self) -> tuple[str, ...]:
        return tuple(self.replicas) or (self.base_url,)


def _http(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return url.rstrip("/")


class Settings(BaseSettings):
    """Everything stillroom can be told. Environment variables win over the config file."""

    model_config = SettingsConfigDict(env_prefix="STILLROOM_", extra="forbid", frozen=True)

    database_url: str = "sqlite:///./stillroom.db"
    """SQLAlchemy URL of the store: a SQLite file for one machine, PostgreSQL for replicas."""

    upstream_base_url: str = OPENAI_BASE_URL
    """OpenAI-compatible server that answers, including its ``/v1``."""

    upstream_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "STILLROOM_UPSTREAM_API_KEY", "OPENAI_API_KEY", "upstream_api_key"
        ),
    )
    """Key the proxy uses upstream for clients that present a stillroom key."""

    admin_key: SecretStr | None = None
    """Key for ``/admin``; with none set, the admin API refuses every call."""

    admin_docs: bool = True
    """Serve the admin API's documentation and schema at ``/admin/docs`` (behind the admin
    key, like every ``/admin`` route); false leaves them out altogether."""

    migrate: bool = True
    """Bring the schema up to date at start; when the database is down then, as soon as it
    answers (``stillroom serve --no-migrate`` turns it off)."""

    key_cache_seconds: float = Field(default=30.0, gt=0, le=3600)
    """How long a stillroom key's verdict is used before the database is asked again: a
    revoked key is refused within this long."""

    key_cache_stale_seconds: float = Field(default=3600.0, ge=0, le=86_400)
    """How long a stillroom key's last verdict keeps being used while the database cannot be
    asked; as soon as it can, the key is checked again (a revocation applies then)."""

    client_write_timeout_seconds: float | None = Field(default=60.0, gt=0)
    """A client that reads none of its response for this long is cut off; none: never."""

    allow_client_keys: bool = True
    """Pass a client's own upstream key through when it is not a stillroom key."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=0, le=64)
    """Processes serving one port; ``0`` or ``auto``: one per CPU this process may run on."""

    spool_dir: Path = Path("./stillroom-spool")
    """Where captures wait, on disk, while the database cannot take them."""

    capture_batch_size: int = Field(default=500, ge=1, le=10_000)
    capture_queue_limit: int = Field(default=5000, ge=1)
    """Most captures waiting in memory for the writer; past it, the request path appends
    them to an overflow spool file (taken back when the writer catches up): memory stays
    bounded when traffic outruns the database."""
    capture_flush_seconds: float = Field(default=0.2, gt=0, le=60)
    """The writer commits at least this often while captures wait."""

    capture_write_timeout_seconds: float = Field(default=5.0, gt=0, le=600)
    """A capture write that takes longer fails and goes to the spool: a stalled database is
    treated as a database that is down."""

    spool_retry_seconds: float = Field(default=2.0, gt=0, le=3600)
    """How often a writer that fell back to the spool tries the database again."""

    upstream_timeout_seconds: float = Field(default=600.0, gt=0)
    """Longest wait for the upstream's next byte (OpenAI's SDK waits 600 s by default)."""

    upstream_connect_timeout_seconds: float = Field(default=10.0, gt=0)
    max_request_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    """Largest chat-completion request body accepted."""

    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"

    rules: RuleList = []
    """Curation rules, run in order on each new capture and on demand (``stillroom rules``)."""

    redaction: RedactionConfig = RedactionConfig()
    """What is scrubbed (e-mail, phone, card, IBAN, custom patterns) and where."""

    judge_model: str = Field(default="gpt-4o-mini", min_length=1, max_length=200)
    """Model that judges evaluation answers (rubric and pairwise), asked through the upstream."""

    eval_concurrency: int = Field(default=4, ge=1, le=256)
    """Most upstream calls an evaluation has in flight at once, judge calls included."""

    eval_poll_seconds: float = Field(default=5.0, gt=0)
    """How often the evaluation worker looks for pending (or abandoned) evaluations."""

    eval_lease_seconds: float = Field(default=60.0, ge=1)
    """How long a replica holds an evaluation without renewing: after a crash, another
    replica (or the restarted one) resumes it this long after the last renewal."""

    training_prices: dict[str, float] = {}
    """US $ per 1M training tokens by base model, over the built-in table of
    ``finetune.DEFAULT_TRAINING_PRICES``; the validator's cost estimate reads it."""

    model_prices: dict[str, ModelPrice] = {}
    """US $ per 1M tokens of inference by model (``{input, output, cached_input}``), over the
    built-in table of ``finetune.DEFAULT_USAGE_PRICES``; a key may be a model, a family
    (``gpt-4o``) or a fine-tuned family (``ft:gpt-4o-mini``). The overview's costs read it."""

    training_backends: dict[str, BackendConfig] = {}
    """Named training backends; ``openai`` (the upstream's URL and key) needs no entry."""

    training_file_wait_seconds: float = Field(default=600.0, gt=0)
    """Longest wait for an uploaded training file to be processed before a launch gives up."""

    training_poll_seconds: float = Field(default=30.0, gt=0)
    """How often a running training job is synced from its backend."""

    upstreams: dict[str, UpstreamConfig] = {}
    """Extra named upstreams for alias targets; ``default`` is always ``upstream_base_url``."""

    route_refresh_seconds: float = Field(default=1.0, gt=0, le=60)
    """How often each process checks the database for alias changes."""

    shadow_max_in_flight: int = Field(default=32, ge=1, le=10_000)
    """Shadow requests running at once per process; more are skipped, never queued."""

    gate: GatePolicy = GatePolicy()
    """Thresholds an evaluated student must meet to be promoted: examples, rubric mean, win
    rate against the teacher, error rate, check pass rate, gain over the base model."""

    canary: CanaryPolicy = CanaryPolicy()
    """How a promotion goes: the canary's share, when it goes full (time or sample), what
    counts as a regression in the online signals, and the shadow rate afterwards."""

    cycles: dict[str, CyclePolicy] = {}
    """Distillation cycles by alias: triggers, training backend and config, gate and canary
    overrides. An alias without an entry runs cycles only when started by hand, with the
    defaults."""

    cycle_poll_seconds: float = Field(default=5.0, gt=0, le=3600)
    """How often the cycle runner checks triggers and moves open cycles on."""

    cycle_lease_seconds: float = Field(default=30.0, gt=0, le=3600)
    """How long the replica that runs cycles keeps that role without renewing it: after it
    dies, another replica takes over within this long."""

    @field_validator("upstreams")
    @classmethod
    def _no_second_default(cls, value: dict[str, UpstreamConfig]) -> dict[str, UpstreamConfig]:
        if "default" in value:
            raise ValueError("'default' is upstream_base_url; give extra upstreams other names")
        return value

    @model_validator(mode="after")
    def _cycles_name_known_backends(self) -> Settings:
        for alias, policy in self.cycles.items():
            if policy.backend != "openai" and policy.backend not in self.training_backends:
                raise ValueError(
                    f"cycles.{alias}.backend names '{policy.backend}', which is not in "
                    "training_backends"
                )
            upstream = policy.student_upstream
            if upstream != "default" and upstream not in self.upstreams:
                raise ValueError(
                    f"cycles.{alias}.student_upstream names '{upstream}', which is not in upstreams"
                )
        return self

    @field_validator("workers", mode="before")
    @classmethod
    def _auto_workers(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        if value.strip().lower() == "auto":
            return 0
        if not value.strip().isdigit():
            raise ValueError("must be a number of worker processes, or auto")
        return value

    @field_validator("database_url")
    @classmethod
    def _known_store(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql", "postgres")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return value

    @field_validator("upstream_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML source reads model_config["toml_file"]: none unless load_settings sets one.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


class SettingsError(Exception):
    """A setting is wrong; the message names it."""


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Parse settings once; a bad value raises SettingsError naming the variable."""
    if config_file is not None and not config_file.is_file():
        raise SettingsError(f"config file {config_file} does not exist")
    try:
        if config_file is None:
            return Settings(**overrides)
        with_file = type(
            "Settings",
            (Settings,),
            {"model_config": {**Settings.model_config, "toml_file": config_file}},
        )
        settings: Settings = with_file(**overrides)
        return settings
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]) or "settings"
            variable = f"STILLROOM_{name.upper()}" if name != "settings" else name
            problems.append(f"{variable}: {error['msg']}")
        raise SettingsError("invalid setting " + "; ".join(problems)) from None
