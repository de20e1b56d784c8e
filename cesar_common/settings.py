"""Cesar's one settings object, read once from the environment (prefix ``CESAR_``).

Every field is documented here; the settings table of docs/settings.md is written from these descriptions.
CLI options map onto the same names (``--port`` <-> ``CESAR_PORT``), and a command that takes
options builds its settings with :func:`get_settings` ``(**overrides)``.
"""

from __future__ import annotations

from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Any

import platformdirs
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cesar_common.choices import ComputeType, Device, LogLevel
from cesar_common.errors import InvalidInputError

__all__ = ["Settings", "get_settings", "reset_settings_cache", "settings_table"]


def default_data_dir() -> Path:
    """Where Cesar keeps its SQLite database by default (``~/.local/share/cesar`` on Linux)."""
    return Path(platformdirs.user_data_dir("cesar", appauthor=False))


def default_models_dir() -> Path:
    """Where ``cesar models pull`` and ``import`` put models (``~/.local/share/cesar/models`` on Linux)."""
    return default_data_dir() / "models"


def default_database_url() -> str:
    return f"sqlite:///{default_data_dir() / 'cesar.db'}"


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """All of Cesar's configuration. Field descriptions double as documentation."""

    model_config = SettingsConfigDict(env_prefix="CESAR_", extra="ignore", validate_default=True, frozen=True)

    # --- storage -------------------------------------------------------------------------------
    database_url: str = Field(
        default_factory=default_database_url,
        json_schema_extra={"shown_default": "`sqlite:///~/.local/share/cesar/cesar.db`"},
        description="SQLAlchemy URL of the job database. SQLite file by default; "
        "`postgresql+psycopg://user@host/db` for several hosts.",
    )
    database_listen_url: str | None = Field(
        default=None,
        json_schema_extra={"shown_default": "unset: `CESAR_DATABASE_URL`"},
        description="PostgreSQL only: where workers and the API `LISTEN` for new and changed jobs, when "
        "`CESAR_DATABASE_URL` goes through PgBouncer in transaction pooling, which cannot carry `LISTEN`: "
        "the server itself or a session-pooling PgBouncer. Without it such a deployment still works, by "
        "polling (`CESAR_POLL_MAX_SECONDS`).",
    )
    db_prepared_statements: bool = Field(
        default=True,
        description="Let the PostgreSQL driver prepare statements it runs often. Turn off behind PgBouncer "
        "older than 1.21 in transaction pooling (it cannot route prepared statements).",
    )
    db_pool_size: int = Field(
        default=5,
        ge=1,
        description="PostgreSQL connections each API or worker process keeps open. A worker needs at most "
        "four at once (decoding, lease renewal, housekeeping, webhooks) plus one for `LISTEN`.",
    )
    db_max_overflow: int = Field(
        default=10,
        ge=0,
        description="Connections a process may open beyond `CESAR_DB_POOL_SIZE` under load (closed again "
        "after use). A process never holds more than the two together, plus one `LISTEN` connection.",
    )
    keep_audio: bool = Field(
        default=False,
        description="Keep a job's uploaded audio in the database after it finishes (default: delete it).",
    )
    blob_url: str | None = Field(
        default=None,
        json_schema_extra={"shown_default": "unset: audio in the database"},
        description="Keep audio in an S3-compatible object store instead of the database: `s3://bucket` or "
        "`s3://bucket/prefix` (AWS S3, MinIO, SeaweedFS, Ceph). Uploads, split parts and live sessions' "
        "audio go there; the database keeps their keys, sizes and sha256. Endpoint, region and "
        "credentials come from the usual AWS variables (`AWS_ENDPOINT_URL`, `AWS_DEFAULT_REGION`, "
        "`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `~/.aws`, an instance role) or the settings below.",
    )
    blob_endpoint_url: str | None = Field(
        default=None,
        json_schema_extra={"shown_default": "unset: `AWS_ENDPOINT_URL`, else AWS"},
        description="The object store's address, for MinIO, SeaweedFS or Ceph: `http://minio:9000`.",
    )
    blob_region: str | None = Field(
        default=None,
        json_schema_extra={"shown_default": "unset: `AWS_DEFAULT_REGION`, else `us-east-1`"},
        description="The object store's region.",
    )
    blob_access_key_id: str | None = Field(
        default=None,
        json_schema_extra={"shown_default": "unset: `AWS_ACCESS_KEY_ID` and AWS's other sources"},
        description="The object store's access key id.",
    )
    blob_secret_access_key: SecretStr | None = Field(
        default=None,
        json_schema_extra={"shown_default": "unset: `AWS_SECRET_ACCESS_KEY` and AWS's other sources"},
        description="The object store's secret key.",
    )
    blob_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How long one request to the object store may wait to connect, and then for each read.",
    )
    blob_grace_seconds: float = Field(
        default=3600.0,
        ge=0,
        description="An object that no job names any more (the job ended, was deleted, or its process died "
        "between writing the object and its row) is deleted by the workers once it is this old.",
    )

    # --- transcription -------------------------------------------------------------------------
    model: str = Field(
        default="tiny.en",
        description="Default Whisper model: `tiny.en` (bundled), another faster-whisper name, "
        "or a path to a CTranslate2 model directory.",
    )
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        json_schema_extra={"shown_default": "empty: only `CESAR_MODEL`"},
        description="Comma-separated models an API client may ask for beside the default model, which is "
        "always allowed: names (`small.en,large-v3`) or model directories. `cesar serve` sizes its workers "
        "for the largest. Each is downloaded on first use unless it is on disk.",
    )
    model_aliases: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        json_schema_extra={"shown_default": "empty (`whisper-1` always means `CESAR_MODEL`)"},
        description="Other names the OpenAI-compatible routes accept for allowed models, comma-separated "
        "`name=model` pairs (`gpt-4o-transcribe=small.en`). `whisper-1` is the default model.",
    )
    models_dir: Path = Field(
        default_factory=default_models_dir,
        json_schema_extra={"shown_default": "`~/.local/share/cesar/models`"},
        description="Models added with `cesar models pull` or `cesar models import`, one directory per name: "
        "a model there is found by its name (`--model NAME`, the API's `model` field) before any download.",
    )
    max_model_import_gb: float = Field(
        default=20.0,
        gt=0,
        description="Most that `cesar models import` may copy or unpack, in GiB (the largest Whisper model, "
        "large-v3, is about 3 GiB): an archive that unpacks to more is refused as it unpacks, before it is "
        "written, and leaves nothing behind.",
    )
    device: Device = Field(default="auto", description="`auto`, `cpu` or `cuda`.")
    compute_type: ComputeType = Field(
        default="auto", description="CTranslate2 compute type; `auto` is float16 on CUDA, int8 on CPU."
    )
    threads: int = Field(
        default=0, ge=0, description="CPU threads per transcription (0: faster-whisper's default)."
    )
    batch_size: int = Field(
        default=0,
        ge=0,
        description="Windows decoded together by batched inference "
        "(0: auto, sized to the device and its free memory; 1: never batch: sequential decoding).",
    )
    split_seconds: float = Field(
        default=600.0,
        ge=0,
        description="Audio longer than this (seconds) is cut at pauses into parts of about this length, "
        "which every idle worker (on any host) transcribes at once; the parts merge into one transcript "
        "(0: never cut).",
    )
    live_sessions: int = Field(
        default=2,
        ge=0,
        le=64,
        description="Live sessions each worker process transcribes at once, beside its file work (threads of "
        "their own: a session never waits behind queued files; 0: this worker takes none).",
    )
    live_step_seconds: float = Field(
        default=0.5,
        ge=0.1,
        le=10,
        description="A live session is decoded again once this much new audio arrived (or as soon as the "
        "pass before ends, when it took longer): shorter answers sooner, longer costs less CPU per session.",
    )
    live_final_pass: bool = Field(
        default=True,
        description="When a live session ends, decode its whole audio again, as a file, for its transcript "
        "(file quality, a few seconds a minute of audio on a CPU); off: the transcript is the segments "
        "confirmed live, joined into sentences.",
    )
    live_start_seconds: float = Field(
        default=3.0,
        gt=0,
        le=60,
        description="How long a new live session waits for a worker to take it before the socket is closed "
        "with 1013 (`no_worker`: try again later).",
    )
    live_idle_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A live session that receives no audio for this long (a silent or vanished client) ends "
        "with what was said so far; a client that lost its connection may resume within it.",
    )
    live_max_seconds: float = Field(
        default=14400.0,
        gt=0,
        description="The most audio (seconds) one live session transcribes; the session ends there.",
    )
    offline: bool = Field(
        default=False,
        validation_alias=AliasChoices("offline", "CESAR_OFFLINE", "HF_HUB_OFFLINE"),
        description="Never download a model (`CESAR_OFFLINE=1`, or Hugging Face's own `HF_HUB_OFFLINE=1`).",
    )

    # --- HTTP API ------------------------------------------------------------------------------
    host: str = Field(default="127.0.0.1", description="Address the API listens on.")
    port: int = Field(default=5000, ge=0, le=65535, description="Port the API listens on.")
    api_key: SecretStr | None = Field(
        default=None,
        description="The server's own admin key: when set, every route except `/health` and `/docs` needs "
        "`Authorization: Bearer <key>` with it or with a key of `cesar keys create` (empty: none). The "
        "client commands (`cesar submit`, `cesar remote ...`) send it.",
    )
    insecure: bool = Field(
        default=False,
        description="Let an API with no key at all (no `CESAR_API_KEY`, no key ever made in its database), "
        "which answers anyone, listen beyond loopback (`--insecure`). Without it such an API refuses to "
        "start on any address but 127.0.0.0/8, `::1` or `localhost`. For a container that publishes its "
        "port on 127.0.0.1 only, or behind a proxy that checks who calls.",
    )
    server: str = Field(
        default="http://127.0.0.1:5000",
        description="The Cesar server the client commands (`cesar submit`, `cesar remote ...`) talk to.",
    )
    max_upload_mb: int = Field(
        default=1024, ge=1, description="Largest upload or URL download accepted, in MiB."
    )
    max_uploads_in_flight: int = Field(
        default=64,
        ge=1,
        description="Uploads the API receives at once (counted once past their first 64 KiB, when each "
        "takes a spool file); one more is refused with `503` and `Retry-After`. The API lowers it to what "
        "its open-file limit allows (`ulimit -n`; it raises its own soft limit to the hard one at start).",
    )
    body_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A request body must bring at least 64 KiB in every this many seconds, or end: a "
        "stalled or trickling upload is cut off with `408` and its connection closed (30 s: about 2 KiB/s, "
        "far below any real client's pace; a large upload over a slow link is never cut off).",
    )
    download_timeout_seconds: float = Field(
        default=1800.0,
        gt=0,
        description="Longest a worker spends downloading a URL job's audio, every redirect included; a "
        "slower server fails the job (`download_failed`).",
    )
    max_audio_seconds: float = Field(
        default=4 * 3600.0,
        gt=0,
        description="Longest audio accepted, in seconds (4 hours): a longer upload is refused at submit "
        "when its header says so (`422 audio_too_long`), anything else by the worker as it decodes.",
    )
    allow_private_urls: bool = Field(
        default=False,
        description="Allow URL jobs (and callbacks) to loopback and private addresses. "
        "Link-local and cloud metadata addresses are always refused.",
    )
    allow_private_networks: Annotated[list[IPv4Network | IPv6Network], NoDecode] = Field(
        default_factory=list,
        json_schema_extra={"shown_default": "empty"},
        description="Private or loopback networks that URL jobs, live stream URLs and callbacks may reach "
        "while `CESAR_ALLOW_PRIVATE_URLS` is off, comma-separated (`10.8.0.0/16,192.168.1.20/32`): one "
        "internal server without opening every private address. Checked against the address each "
        "connection reaches; link-local and cloud metadata addresses are refused even here.",
    )

    # --- workers -------------------------------------------------------------------------------
    workers: str = Field(
        default="auto",
        description="Worker processes `cesar serve` starts: a number, or `auto` to fit the machine.",
    )
    worker_models: int = Field(
        default=0,
        ge=0,
        description="Most models a worker keeps loaded at once, least recently used unloaded first (0: no "
        "count, only `CESAR_WORKER_MODEL_MEMORY_MB` limits them; `1`: one, the old default).",
    )
    worker_model_memory_mb: int = Field(
        default=0,
        ge=0,
        json_schema_extra={"shown_default": "`0`: half the machine's memory, shared by its workers"},
        description="Memory the models a worker keeps loaded may take together, in MiB (each model's "
        "estimate from its files, corrected by the worker's resident memory measured after loading it): "
        "the least recently used are unloaded to make room, and a job for a model that would not fit alone "
        "fails (`model_too_large`). 0: half the machine's memory (or its container's limit), divided among "
        "the workers `cesar serve` starts on it; a worker started alone takes the whole half.",
    )
    lease_seconds: float = Field(
        default=60.0, gt=0, description="How long a claimed job stays owned without a heartbeat."
    )
    max_attempts: int = Field(
        default=3, ge=1, description="Claims a job gets before a lost worker makes it fail."
    )
    shutdown_grace_seconds: float = Field(
        default=30.0,
        ge=0,
        description="On SIGTERM, how long a worker may finish its job before handing it back.",
    )
    poll_max_seconds: float = Field(
        default=1.0, gt=0, description="Longest pause between an idle worker's looks at the queue."
    )

    # --- integrations --------------------------------------------------------------------------
    webhook_secret: SecretStr | None = Field(
        default=None, description="Signs webhook deliveries (`Cesar-Signature` header)."
    )
    webhook_max_attempts: int = Field(
        default=8, ge=1, description="Tries of one webhook delivery before it is given up as `failed`."
    )
    webhook_backoff_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Wait before a webhook's second try; each later wait doubles (with jitter), so the "
        "default 8 tries span about an hour.",
    )
    webhook_lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How long a worker owns a webhook delivery it claimed; if it dies, another worker "
        "retries the delivery after this.",
    )
    retention_days: float = Field(
        default=0, ge=0, description="Delete finished jobs older than this many days (0: keep forever)."
    )

    # --- process -------------------------------------------------------------------------------
    log_level: LogLevel = Field(
        default="info", description="Log level of `cesar serve`, the API and the workers."
    )

    @field_validator(
        "blob_endpoint_url", "blob_region", "blob_access_key_id", "blob_secret_access_key", mode="before"
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # compose passes `${VAR:-}`: an empty value means the AWS default, not an empty address or key
        return None if value == "" else value

    @field_validator("blob_url")
    @classmethod
    def _blob_url_is_s3(cls, value: str | None) -> str | None:
        if not value:
            return None
        from cesar_common.blob_store import parse_blob_url

        parse_blob_url(value)
        return value

    @field_validator("api_key", mode="before")
    @classmethod
    def _blank_key_is_none(cls, value: Any) -> Any:
        # `CESAR_API_KEY=` (compose's `${CESAR_API_KEY:-}`) means no key, not a key no one can send
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("models", mode="before")
    @classmethod
    def _parse_models(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("allow_private_networks", mode="before")
    @classmethod
    def _parse_networks(cls, value: Any) -> Any:
        networks = []
        for item in _split_csv(value):
            try:  # not strict: 10.1.2.3/16 means its network, 10.1.0.0/16
                networks.append(ip_network(item, strict=False) if isinstance(item, str) else item)
            except ValueError as exc:
                raise ValueError(f"{item!r} is not a network such as 10.8.0.0/16 or 192.168.1.20/32") from exc
        return networks

    @field_validator("model_aliases", mode="before")
    @classmethod
    def _parse_aliases(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        aliases: dict[str, str] = {}
        for pair in _split_csv(value):
            name, sep, model = (part.strip() for part in pair.partition("="))
            if not (sep and name and model):
                raise ValueError(f"{pair!r} is not a `name=model` pair")
            aliases[name] = model
        return aliases

    @model_validator(mode="after")
    def _aliases_name_allowed_models(self) -> Settings:
        for name, model in self.model_aliases.items():
            if model not in self.allowed_models:
                raise ValueError(
                    f"model alias {name}={model}: {model!r} is not allowed (CESAR_MODEL, CESAR_MODELS)"
                )
        return self

    @field_validator("log_level", "device", "compute_type", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @property
    def engine_options(self) -> dict[str, Any]:
        """How a long-running process opens its database engine (``open_engine``'s options)."""
        return {
            "pool_size": self.db_pool_size,
            "max_overflow": self.db_max_overflow,
            "prepared_statements": self.db_prepared_statements,
        }

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    @property
    def max_model_import_bytes(self) -> int:
        return int(self.max_model_import_gb * 1024**3)

    @property
    def allowed_models(self) -> frozenset[str]:
        return frozenset([*self.models, self.model])


def settings_table() -> str:
    """The settings table of docs/settings.md (Markdown), from the fields' descriptions and defaults."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        shown = extra.get("shown_default") or _shown(field.default)
        rows.append(f"| `CESAR_{name.upper()}` | {shown} | {field.description} |")
    return "\n".join(rows) + "\n"


def _shown(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


@lru_cache(maxsize=1)
def _env_settings() -> Settings:
    return Settings()


def get_settings(**overrides: Any) -> Settings:
    """The settings from the environment, read once; ``overrides`` (non-None values) win.

    A bad value (a variable, or an override from a command-line option) is an InvalidInputError naming the
    variable, in one line.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        if not given:
            return _env_settings()
        # init values take precedence over the environment, and are validated like it
        return Settings(**given)
    except ValidationError as exc:
        raise InvalidInputError(f"invalid settings: {_first_problem(exc)}") from None


def _first_problem(exc: ValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return str(exc)
    name = "_".join(str(part) for part in errors[0]["loc"]).upper()
    return f"CESAR_{name}: {errors[0]['msg']}"


def reset_settings_cache() -> None:
    """For tests that change the environment."""
    _env_settings.cache_clear()
