"""load_config: YAML defaults, environment overrides, errors that name the key, secrets kept out of output."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_app.config import DEFAULT_CONFIG_PATH, StreamConfig, load_config
from stream_app.errors import ConfigError

SASL_PASSWORD = "kafka-pw-7f3a9c"
REDIS_PASSWORD = "redis-pw-c41d22"
SASL_ENV = {
    "STREAM_APP__KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
    "STREAM_APP__KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
    "STREAM_APP__KAFKA__SASL_USERNAME": "svc-casting",
    "STREAM_APP__KAFKA__SASL_PASSWORD": SASL_PASSWORD,
    "STREAM_APP__REDIS__PASSWORD": REDIS_PASSWORD,
}


def test_defaults_load_from_the_repository_yaml():
    assert DEFAULT_CONFIG_PATH.name == "stream.yaml" and DEFAULT_CONFIG_PATH.exists()
    cfg = load_config(environ={})
    assert cfg.app_id == "casting-defect"
    assert cfg.kafka.bootstrap_servers == ["127.0.0.1:9092"]
    assert cfg.batching.max_batch_size == 64
    assert cfg.window.gap_fill == "ffill" and cfg.window.max_gap_share == 0.05
    assert [c.name for c in cfg.validation.channels] == [
        "casting_speed", "mold_temperature", "mold_level", "cooling_water_flow", "superheat",
    ]
    assert [(c.min, c.max) for c in cfg.validation.channels] == [
        (0.5, 2.5), (1400.0, 1650.0), (100.0, 200.0), (100.0, 300.0), (10.0, 50.0),
    ]
    assert cfg.kafka.sasl_password is None and cfg.redis.password is None
    assert cfg.redis_prefix == "csd:casting-defect"


def test_yaml_agrees_with_code_defaults():
    assert load_config(environ={}) == StreamConfig()


def test_unprefixed_environment_is_ignored():
    cfg = load_config(environ={"MAX_BATCH_SIZE": "1", "STREAM_APP_BATCHING__MAX_BATCH_SIZE": "2", "PATH": "/bin"})
    assert cfg.batching.max_batch_size == 64


@pytest.mark.parametrize(
    ("environ", "read", "expected"),
    [
        pytest.param({"STREAM_APP__BATCHING__MAX_BATCH_SIZE": "128"}, lambda c: c.batching.max_batch_size, 128,
                     id="int"),
        pytest.param({"STREAM_APP__BATCHING__MAX_WAIT_MS": "7.5"}, lambda c: c.batching.max_wait_ms, 7.5,
                     id="float"),
        pytest.param({"STREAM_APP__KAFKA__BOOTSTRAP_SERVERS": "broker-1:9092,broker-2:9092"},
                     lambda c: c.kafka.bootstrap_servers, ["broker-1:9092", "broker-2:9092"], id="comma-list"),
        pytest.param({"STREAM_APP__KAFKA__BOOTSTRAP_SERVERS": " b1:9092 , b2:9093 ,"},
                     lambda c: c.kafka.bootstrap_servers, ["b1:9092", "b2:9093"], id="comma-list-spaces"),
        pytest.param({"STREAM_APP__KAFKA__BOOTSTRAP_SERVERS": "kafka:29092"},
                     lambda c: c.kafka.broker_urls(), ["kafka://kafka:29092"], id="single-server"),
        pytest.param({"STREAM_APP__WINDOW__GAP_FILL": "linear"}, lambda c: c.window.gap_fill, "linear",
                     id="literal"),
        pytest.param({"STREAM_APP__MODEL__TORCH_THREADS": "2"}, lambda c: c.model.torch_threads, 2,
                     id="optional-int"),
        pytest.param({"STREAM_APP__MODEL__CHECKPOINT": "/models/m.pt"}, lambda c: c.model.checkpoint,
                     Path("/models/m.pt"), id="path"),
        pytest.param({"STREAM_APP__APP_ID": "replay-1"}, lambda c: c.redis_prefix, "csd:replay-1", id="top-level"),
        pytest.param({"STREAM_APP__REDIS__URL": "rediss://cache:6380/2"}, lambda c: c.redis.url,
                     "rediss://cache:6380/2", id="redis-tls"),
        pytest.param({"STREAM_APP__REDIS__URL": "unix:///run/redis.sock"}, lambda c: c.redis.url,
                     "unix:///run/redis.sock", id="redis-unix"),
        pytest.param({"STREAM_APP__VALIDATION__MAX_STEPS": "400", "STREAM_APP__VALIDATION__MIN_STEPS": "50"},
                     lambda c: (c.validation.min_steps, c.validation.max_steps, c.validation.max_message_bytes),
                     (50, 400, 262144), id="nested-keeps-siblings"),
        pytest.param({"STREAM_APP__METRICS__HOST": "127.0.0.1"}, lambda c: c.metrics.host, "127.0.0.1",
                     id="dotted-string"),
    ],
)
def test_environment_overrides(environ, read, expected):
    assert read(load_config(environ=environ)) == expected


def test_keyword_overrides_win_over_environment():
    cfg = load_config(environ={"STREAM_APP__BATCHING__MAX_BATCH_SIZE": "128"}, batching={"max_batch_size": 8})
    assert cfg.batching.max_batch_size == 8
    assert cfg.batching.max_wait_ms == 20  # sibling from the YAML kept


def test_config_file_path(tmp_path):
    path = tmp_path / "stream.yaml"
    path.write_text("app_id: from-file\nbatching:\n  max_batch_size: 3\n")
    cfg = load_config(path, environ={"STREAM_APP__BATCHING__MAX_WAIT_MS": "1"})
    assert (cfg.app_id, cfg.batching.max_batch_size, cfg.batching.max_wait_ms) == ("from-file", 3, 1.0)
    assert cfg.topics.sensors == "casting.sensors"


def test_empty_config_file_gives_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing\n")
    assert load_config(path, environ={}) == StreamConfig()


@pytest.mark.parametrize(
    ("environ", "key"),
    [
        pytest.param({"STREAM_APP__BATCHING__MAX_BATCH": "128"}, "batching.max_batch", id="unknown-key"),
        pytest.param({"STREAM_APP__NOPE": "1"}, "nope", id="unknown-section"),
        pytest.param({"STREAM_APP__BATCHING__MAX_BATCH_SIZE": "0"}, "batching.max_batch_size", id="below-minimum"),
        pytest.param({"STREAM_APP__BATCHING__MAX_BATCH_SIZE": "lots"}, "batching.max_batch_size", id="not-an-int"),
        pytest.param({"STREAM_APP__MODEL__THRESHOLD": "1.5"}, "model.threshold", id="threshold-above-1"),
        pytest.param({"STREAM_APP__MODEL__DEVICE": "tpu"}, "model.device", id="bad-literal"),
        pytest.param({"STREAM_APP__WINDOW__GAP_FILL": "bfill"}, "window.gap_fill", id="bad-gap-fill"),
        pytest.param({"STREAM_APP__WINDOW__MAX_GAP_SHARE": "1.5"}, "window.max_gap_share", id="share-above-1"),
        pytest.param({"STREAM_APP__KAFKA__SECURITY_PROTOCOL": "TLS"}, "kafka.security_protocol", id="protocol"),
        pytest.param({"STREAM_APP__TOPICS__PARTITIONS": "0"}, "topics.partitions", id="partitions"),
        pytest.param({"STREAM_APP__TOPICS__MIN_INSYNC_REPLICAS": "2"}, "topics", id="min-isr-above-replication"),
        pytest.param({"STREAM_APP__TOPICS__MIN_INSYNC_REPLICAS": "0"}, "topics.min_insync_replicas", id="min-isr-0"),
        pytest.param({"STREAM_APP__APP_ID": "has space"}, "app_id", id="app-id-pattern"),
        pytest.param({"STREAM_APP__METRICS__PORT": "70000"}, "metrics.port", id="port"),
        pytest.param({"STREAM_APP__REDIS__URL": "http://cache:6379"}, "redis.url", id="redis-scheme-http"),
        pytest.param({"STREAM_APP__REDIS__URL": "cache:6379"}, "redis.url", id="redis-no-scheme"),
        pytest.param({"STREAM_APP__REDIS__KEY_TTL_S": "10"}, "redis.key_ttl_s", id="ttl-too-short"),
        pytest.param({"STREAM_APP__VALIDATION__MIN_STEPS": "600"}, "validation", id="min-above-max-steps"),
        pytest.param({"STREAM_APP__KAFKA__HEARTBEAT_INTERVAL_S": "5"}, "kafka", id="heartbeat-vs-session"),
    ],
)
def test_invalid_values_name_the_key(environ, key):
    with pytest.raises(ConfigError) as caught:
        load_config(environ=environ)
    message = str(caught.value)
    assert message.startswith("invalid configuration:")
    assert f"  {key}: " in message
    assert key in caught.value.keys


def test_min_insync_replicas_goes_into_the_topic_config():
    assert load_config(environ={}).topics.topic_configs() == {}  # the broker's default
    cfg = load_config(environ={"STREAM_APP__TOPICS__REPLICATION_FACTOR": "3",
                               "STREAM_APP__TOPICS__MIN_INSYNC_REPLICAS": "2"})
    assert cfg.topics.topic_configs() == {"min.insync.replicas": "2"}
    with pytest.raises(ConfigError, match=r"min_insync_replicas \(3\) must be at most replication_factor \(1\)"):
        load_config(environ={"STREAM_APP__TOPICS__MIN_INSYNC_REPLICAS": "3"})


def test_redis_scheme_error_says_which_schemes():
    with pytest.raises(ConfigError, match=r"redis\.url: .*redis://, rediss:// \(TLS\) or unix://"):
        load_config(environ={"STREAM_APP__REDIS__URL": "tcp://cache:6379"})


def test_unknown_env_key_message():
    with pytest.raises(ConfigError, match=r"batching\.max_batch: Extra inputs are not permitted"):
        load_config(environ={"STREAM_APP__BATCHING__MAX_BATCH": "128"})


def test_empty_environment_value_unsets_an_optional_key(tmp_path):
    path = tmp_path / "stream.yaml"
    path.write_text("model:\n  torch_threads: 2\n")
    assert load_config(path, environ={}).model.torch_threads == 2
    assert load_config(path, environ={"STREAM_APP__MODEL__TORCH_THREADS": ""}).model.torch_threads is None


def test_channels_from_the_environment_as_yaml():
    cfg = load_config(environ={"STREAM_APP__VALIDATION__CHANNELS": "[{name: a, unit: u, min: 0, max: 1}]"})
    assert [(c.name, c.min, c.max) for c in cfg.validation.channels] == [("a", 0.0, 1.0)]


def test_config_error_is_the_models_config_error():
    import models.config

    assert ConfigError is models.config.ConfigError
    with pytest.raises(models.config.ConfigError):
        load_config(environ={"STREAM_APP__NOPE": "1"})


def test_empty_path_segment_in_variable_name():
    with pytest.raises(ConfigError, match="STREAM_APP__BATCHING____X"):
        load_config(environ={"STREAM_APP__BATCHING____X": "1"})


def test_bad_yaml_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("kafka: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid YAML") as caught:
        load_config(path, environ={})
    assert str(path) in str(caught.value)


def test_yaml_file_without_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(path, environ={})


def test_missing_file(tmp_path):
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError, match="config file not found") as caught:
        load_config(path, environ={})
    assert str(path) in str(caught.value)


def test_invalid_value_in_file_names_the_key(tmp_path):
    path = tmp_path / "stream.yaml"
    path.write_text("window:\n  gap_fill: nearest\n")
    with pytest.raises(ConfigError, match=r"window\.gap_fill"):
        load_config(path, environ={})


@pytest.mark.parametrize(
    "missing",
    ["STREAM_APP__KAFKA__SASL_PASSWORD", "STREAM_APP__KAFKA__SASL_USERNAME", "STREAM_APP__KAFKA__SASL_MECHANISM"],
)
def test_sasl_without_credentials_fails(missing):
    environ = {k: v for k, v in SASL_ENV.items() if k != missing}
    with pytest.raises(ConfigError) as caught:
        load_config(environ=environ)
    message = str(caught.value)
    assert "kafka: " in message and "SASL" in message and "STREAM_APP__KAFKA__SASL_PASSWORD" in message
    assert SASL_PASSWORD not in message and REDIS_PASSWORD not in message


def test_sasl_with_credentials_loads_and_secrets_are_readable():
    cfg = load_config(environ=SASL_ENV)
    assert cfg.kafka.security_protocol == "SASL_SSL"
    assert cfg.kafka.sasl_password.get_secret_value() == SASL_PASSWORD
    assert cfg.redis.password.get_secret_value() == REDIS_PASSWORD


def test_secrets_never_appear_in_output():
    cfg = load_config(environ=SASL_ENV)
    for text in (repr(cfg), str(cfg), cfg.model_dump_json(), str(cfg.model_dump()), repr(cfg.kafka),
                 repr(cfg.redis), cfg.kafka.model_dump_json(), cfg.redis.model_dump_json()):
        assert SASL_PASSWORD not in text
        assert REDIS_PASSWORD not in text
    assert "svc-casting" in repr(cfg)  # the username is not a secret, so the check above is meaningful


def test_secret_not_echoed_in_validation_errors():
    environ = {**SASL_ENV, "STREAM_APP__BATCHING__MAX_BATCH_SIZE": "0", "STREAM_APP__KAFKA__SASL_MECHANISM": "MD5"}
    with pytest.raises(ConfigError) as caught:
        load_config(environ=environ)
    assert SASL_PASSWORD not in str(caught.value) and REDIS_PASSWORD not in str(caught.value)


@pytest.mark.parametrize("secret", ["yes", "no", "on", "off", "Off"])
def test_secret_that_yaml_reads_as_bool_stays_text(secret):
    cfg = load_config(environ={"STREAM_APP__REDIS__PASSWORD": secret})
    assert cfg.redis.password.get_secret_value() == secret


@pytest.mark.parametrize(
    "secret", ["123456", "0x1F", "pa ss #1", " padded ", "'quoted'", "null", "&anchor", "true", "False"],
)
def test_secret_from_environment_is_kept_verbatim(secret):
    cfg = load_config(environ={"STREAM_APP__REDIS__PASSWORD": secret})
    assert cfg.redis.password is not None
    assert cfg.redis.password.get_secret_value() == secret


def test_write_config_round_trips_and_leaves_secrets_out(tmp_path):
    from stream_app.config import write_config

    cfg = load_config(environ={**SASL_ENV, "STREAM_APP__BATCHING__MAX_BATCH_SIZE": "7"},
                      validation={"channels": [{"name": "a", "unit": "u", "min": 0, "max": 1}]})
    path = write_config(cfg, tmp_path / "child.yaml")
    assert SASL_PASSWORD not in path.read_text() and REDIS_PASSWORD not in path.read_text()
    secrets = {k: v for k, v in SASL_ENV.items() if k.endswith("PASSWORD")}
    assert load_config(path, environ=secrets) == cfg


def _channels_env(channels: list[str]) -> dict[str, str]:
    return {"STREAM_APP__VALIDATION__CHANNELS": "[" + ", ".join(channels) + "]"}


@pytest.mark.parametrize(
    ("channels", "message"),
    [
        pytest.param([], "at least 1", id="none"),
        pytest.param([f"{{name: c{i}, unit: u, min: 0, max: 1}}" for i in range(65)], "at most 64", id="65"),
        pytest.param(["{name: a, unit: u, min: 0, max: 1}"] * 2, "repeated: a", id="repeated-name"),
        pytest.param(["{name: step, unit: u, min: 0, max: 1}"], "reserved", id="reserved-name"),
        pytest.param(["{name: 'has space', unit: u, min: 0, max: 1}"], "pattern", id="name-pattern"),
        pytest.param(["{name: a, unit: u, min: 1, max: 1}"], "min must be below max", id="empty-range"),
    ],
)
def test_bad_channel_sets_name_the_key(channels, message):
    with pytest.raises(ConfigError) as caught:
        load_config(environ=_channels_env(channels))
    assert "validation.channels" in str(caught.value) and message in str(caught.value)


def test_one_and_sixty_four_channels_load():
    for count in (1, 64):
        cfg = load_config(environ=_channels_env([f"{{name: c{i}, unit: u, min: 0, max: 1}}" for i in range(count)]))
        assert len(cfg.validation.channels) == count


def test_the_example_plant_config_loads():
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "examples" / "slab-caster-12ch.yaml",
                      environ={})
    assert len(cfg.validation.channels) == 12 and cfg.app_id == "slab12-defect"
