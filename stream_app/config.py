"""Service configuration: `configs/stream.yaml` plus environment overrides, validated by pydantic.

Every key can be overridden by an environment variable named after its path, upper-case, with
``__`` between levels and the prefix ``STREAM_APP__``::

    STREAM_APP__KAFKA__BOOTSTRAP_SERVERS=broker-1:9092,broker-2:9092
    STREAM_APP__BATCHING__MAX_BATCH_SIZE=128
    STREAM_APP__REDIS__PASSWORD=...        (secrets: environment only, never logged)

Values are text, converted by the key's type (``128`` for an int key, ``a,b`` for a list of strings);
a value starting with ``[`` or ``{`` is read as YAML (for keys such as ``validation.channels``); an empty
value unsets an optional key. Keyword overrides of `load_config` win over the environment.
Invalid config fails at start with a `ConfigError` naming the key.

Loading, these environment rules and the error messages are ``models.settings``, the one machinery the
model config (``LSTM__SECTION__KEY``) uses too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from models.settings import build_config, read_yaml_mapping, split_list
from stream_app.errors import ConfigError  # noqa: F401 - stream_app.config.ConfigError, as before

ENV_PREFIX = "STREAM_APP__"
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[1] / "configs" / "stream.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaConfig(_Section):
    bootstrap_servers: list[str] = ["127.0.0.1:9092"]
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    client_id: str = "casting-defect"
    # how fast a crashed worker's partitions move to the others: its session must time out first
    session_timeout_s: float = Field(10.0, ge=1.0)
    heartbeat_interval_s: float = Field(3.0, gt=0.0)
    rebalance_timeout_s: float = Field(30.0, ge=1.0)
    # per partition and fetch; 1 MiB (faust's default) starves ingest of chunked readings
    max_partition_fetch_bytes: int = Field(8 * 1024 * 1024, ge=65_536)

    # "a,b" in the YAML file or a keyword override too (the environment's lists are split by the loader)
    _split = field_validator("bootstrap_servers", mode="before")(split_list)

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaConfig:
        if self.security_protocol.startswith("SASL") and (
            self.sasl_mechanism is None or not self.sasl_username or self.sasl_password is None
        ):
            raise ValueError(
                "security_protocol SASL_* needs sasl_mechanism, sasl_username and sasl_password "
                "(set STREAM_APP__KAFKA__SASL_PASSWORD in the environment)"
            )
        return self

    @model_validator(mode="after")
    def _heartbeat_below_session(self) -> KafkaConfig:
        if self.heartbeat_interval_s * 3 > self.session_timeout_s:
            raise ValueError("heartbeat_interval_s must be at most a third of session_timeout_s")
        return self

    def broker_urls(self) -> list[str]:
        """Broker list in faust's URL form."""
        return [f"kafka://{server}" for server in self.bootstrap_servers]


class TopicsConfig(_Section):
    sensors: str = "casting.sensors"
    predictions: str = "casting.predictions"
    deadletter: str = "casting.deadletter"
    partitions: int = Field(4, ge=1)
    replication_factor: int = Field(1, ge=1)
    # a write acknowledged with acks=all is on this many replicas; None: the broker's own default
    min_insync_replicas: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _min_isr_within_replication(self) -> TopicsConfig:
        if self.min_insync_replicas is not None and self.min_insync_replicas > self.replication_factor:
            raise ValueError(
                f"min_insync_replicas ({self.min_insync_replicas}) must be at most replication_factor "
                f"({self.replication_factor}): no write could ever be acknowledged"
            )
        return self

    def topic_configs(self) -> dict[str, str]:
        """The per-topic broker settings of every topic the project creates."""
        if self.min_insync_replicas is None:
            return {}
        return {"min.insync.replicas": str(self.min_insync_replicas)}


class RedisConfig(_Section):
    url: str = Field("redis://127.0.0.1:6379/0", repr=False)  # may hold a password
    password: SecretStr | None = None
    ssl_cafile: Path | None = None  # CA bundle that signed the server's certificate (rediss://)
    key_ttl_s: int = Field(86_400, ge=60)
    socket_timeout_s: float = Field(5.0, gt=0)
    # a Redis Cluster: `url` is one seed node (db 0), the client discovers the other masters
    cluster: bool = False

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// (TLS) or unix://")
        return url

    @model_validator(mode="after")
    def _cluster_url(self) -> RedisConfig:
        if self.cluster:
            if self.url.startswith("unix://"):
                raise ValueError("redis.cluster: a Redis Cluster is reached over TCP; redis.url must be "
                                 "redis:// or rediss:// (one seed node)")
            db = urlsplit(self.url).path.strip("/")
            if db not in ("", "0"):
                raise ValueError(f"redis.cluster: a Redis Cluster has only database 0; redis.url names database {db}")
        return self


class ChannelLimits(_Section):
    # a column name in dataset files too, beside `casting_id` and `step`
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
    unit: str
    min: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> ChannelLimits:
        if self.name in ("casting_id", "step"):
            raise ValueError(f"channel name {self.name!r} is reserved for the dataset file's key columns")
        if not self.min < self.max:
            raise ValueError(f"channel {self.name}: min must be below max")
        return self


def _default_channels() -> list[ChannelLimits]:
    rows = [
        ("casting_speed", "m/min", 0.5, 2.5),
        ("mold_temperature", "degC", 1400.0, 1650.0),
        ("mold_level", "mm", 100.0, 200.0),
        ("cooling_water_flow", "L/min", 100.0, 300.0),
        ("superheat", "degC", 10.0, 50.0),
    ]
    return [ChannelLimits(name=n, unit=u, min=lo, max=hi) for n, u, lo, hi in rows]


class ValidationConfig(_Section):
    # the one list of the line's channels (feature order): parser, windows, simulator, dataset, model
    channels: list[ChannelLimits] = Field(default_factory=_default_channels, min_length=1, max_length=64)
    min_steps: int = Field(100, ge=1)
    max_steps: int = Field(500, ge=1)
    max_message_bytes: int = Field(262_144, ge=256)

    @field_validator("channels")
    @classmethod
    def _unique_names(cls, channels: list[ChannelLimits]) -> list[ChannelLimits]:
        names = [c.name for c in channels]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"channel names must be unique; repeated: {', '.join(repeated)}")
        return channels

    @model_validator(mode="after")
    def _steps_ordered(self) -> ValidationConfig:
        if self.min_steps > self.max_steps:
            raise ValueError("min_steps must not exceed max_steps")
        return self


class WindowConfig(_Section):
    gap_fill: Literal["ffill", "linear"] = "ffill"
    max_gap_share: float = Field(0.05, ge=0.0, le=1.0)
    abandon_after_s: float = Field(600.0, gt=0)
    sweep_interval_s: float = Field(10.0, gt=0)


class BatchingConfig(_Section):
    max_batch_size: int = Field(64, ge=1)
    max_wait_ms: float = Field(20.0, ge=0)
    ingest_take_size: int = Field(4000, ge=1)
    ingest_take_timeout_s: float = Field(0.05, gt=0)


class ModelConfig(_Section):
    checkpoint: Path = Path("checkpoints/default/model.pt")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # float64 makes a casting's score independent of the batch it was scored in (replays and re-scores
    # reproduce live probabilities exactly); float32 is about twice as fast. auto: float64 on CPU, float32 on GPU.
    precision: Literal["auto", "float32", "float64"] = "auto"
    # "checkpoint": the decision threshold stored with the model (chosen on validation data), 0.5 if none
    threshold: Literal["checkpoint"] | float = "checkpoint"
    torch_threads: int | None = Field(None, ge=1)
    # live swap: the worker checks the checkpoint file this often and serves a new one between batches; 0: never
    watch_interval_s: float = Field(2.0, ge=0)

    @field_validator("threshold")
    @classmethod
    def _probability(cls, value: str | float) -> str | float:
        if isinstance(value, float) and not 0.0 < value < 1.0:
            raise ValueError("must lie strictly between 0 and 1, or be 'checkpoint'")
        return value


class MetricsConfig(_Section):
    """`/metrics` and `/health`; loopback only unless widened (e.g. 0.0.0.0 inside a container)."""

    port: int = Field(9464, ge=0, le=65535)
    host: str = "127.0.0.1"


class ResilienceConfig(_Section):
    """How the worker waits out Redis and Kafka outages, and how long it may take to stop."""

    retry_initial_s: float = Field(0.1, gt=0)  # first wait after a failed call; doubles, with jitter
    retry_max_s: float = Field(5.0, gt=0)  # longest wait between two attempts
    probe_interval_s: float = Field(2.0, gt=0)  # readiness: Redis and the broker are asked this often
    # a call still unanswered after this long counts as an outage (unready) while it goes on waiting: a producer
    # whose partition leader is gone for good waits without an error (two of three brokers down)
    stall_after_s: float = Field(10.0, gt=0)
    shutdown_grace_s: float = Field(30.0, gt=0)  # after SIGTERM the process exits within this, even mid-outage


class DashboardConfig(_Section):
    """`stream-app dashboard`: the control-room page. Loopback only unless widened (0.0.0.0 for a wall screen)."""

    host: str = "127.0.0.1"
    port: int = Field(8050, ge=0, le=65535)
    # the castings kept (traces, prediction, attention); memory grows linearly with it (README: Dashboard)
    max_castings: int = Field(500, ge=10, le=100_000)
    # optional access token: `Authorization: Bearer <token>` or `?token=<token>` (environment only, never logged)
    token: SecretStr | None = None
    # a casting id's strand: the regex's first group (e.g. "L1-S3-00042" -> "S3"); no match: no strand
    strand_pattern: str = r"(?:^|[-_])(S\d+)(?:[-_]|$)"
    # a casting with readings but no prediction is dropped from memory after this long (abandoned/dead-lettered)
    pending_ttl_s: float = Field(900.0, gt=0)
    push_interval_s: float = Field(1.0, gt=0)  # rates and new rows go to the browsers at most this often
    keepalive_s: float = Field(15.0, gt=0)  # SSE comment line to idle clients (proxies close silent streams)
    max_clients: int = Field(100, ge=1)
    # the worker's consumer group whose lag on the sensor topic the page shows ("" = <app_id>.ingest)
    lag_group: str = ""

    @field_validator("strand_pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        import re

        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return pattern


class StreamConfig(_Section):
    """The root config: one section per stage."""

    app_id: str = Field("casting-defect", pattern=r"^[A-Za-z0-9._-]+$")
    kafka: KafkaConfig = KafkaConfig()
    topics: TopicsConfig = TopicsConfig()
    redis: RedisConfig = RedisConfig()
    validation: ValidationConfig = ValidationConfig()
    window: WindowConfig = WindowConfig()
    batching: BatchingConfig = BatchingConfig()
    model: ModelConfig = ModelConfig()
    metrics: MetricsConfig = MetricsConfig()
    resilience: ResilienceConfig = ResilienceConfig()
    dashboard: DashboardConfig = DashboardConfig()

    @property
    def redis_prefix(self) -> str:
        """Redis keys of this app id; a replay runs under its own app id, so never touches live buffers."""
        return f"csd:{self.app_id}"


def write_config(cfg: StreamConfig, path: Path | str) -> Path:
    """Write `cfg` as a YAML file that `load_config(path)` reads back as the same config, for a child
    process (`stream-app worker --config FILE`). Secrets are left out: the child inherits them from the
    environment, they are never written to disk."""
    path = Path(path)
    data = cfg.model_dump(mode="json", exclude={"kafka": {"sasl_password"}, "redis": {"password"},
                                                   "dashboard": {"token"}})
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def load_config(
    path: Path | str | None = None, environ: Mapping[str, str] | None = None, **overrides: Any
) -> StreamConfig:
    """Read YAML (default `configs/stream.yaml`), apply `STREAM_APP__*` environment and keyword overrides."""
    environ = os.environ if environ is None else environ
    config_path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    data = read_yaml_mapping(config_path) if path is not None or config_path.exists() else {}
    return build_config(StreamConfig, data, env_prefix=ENV_PREFIX, environ=environ, overrides=overrides)
