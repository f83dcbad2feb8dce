"""The secured stack for real: Kafka over SASL_SSL (SCRAM-SHA-512), Redis over TLS with an ACL user.

The service test, a fault test and the replay test run unchanged against it (their bodies, given the
secured config); wrong settings stop each command at once with one error naming the setting and exit
code 2 (no retry storm); and no password appears in anything a secured run writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from stream_app.cli import cli
from stream_app.config import ENV_PREFIX, load_config
from tests.test_stream_app import test_faults, test_replay, test_service
from tests.test_stream_app.conftest import connection_free_environ
from tests.test_stream_app.harness import make_castings, produce_castings

pytestmark = [pytest.mark.integration, pytest.mark.secured]

KAFKA, REDIS = f"{ENV_PREFIX}KAFKA__", f"{ENV_PREFIX}REDIS__"


def assert_secured(cfg) -> None:
    assert cfg.kafka.security_protocol == "SASL_SSL" and cfg.kafka.sasl_mechanism == "SCRAM-SHA-512"
    assert cfg.redis.url.startswith("rediss://") and cfg.redis.password is not None


# --------------------------------------------------------------------------- the suite's own tests, secured


def test_service_over_sasl_ssl_and_tls_redis(secured_service_config, worker_factory, reader_factory, tiny_checkpoint):
    def config(**overrides):
        cfg = secured_service_config(**overrides)
        assert_secured(cfg)
        return cfg

    test_service.test_300_castings_over_4_partitions_match_offline_forward(config, worker_factory, reader_factory,
                                                                           tiny_checkpoint)


def test_sigterm_mid_stream_over_the_secured_stack(secured_service_config, worker_factory, reader_factory,
                                                   tiny_checkpoint):
    test_faults.test_sigterm_mid_stream_exits_0_and_hands_back_in_flight_work(
        secured_service_config, worker_factory, reader_factory, tiny_checkpoint)


def test_replay_over_the_secured_stack(secured_service_config, worker_factory, reader_factory, tiny_checkpoint):
    test_replay.test_replay_matches_live_run_and_leaves_live_worker_alone(
        secured_service_config, worker_factory, reader_factory, tiny_checkpoint)


# --------------------------------------------------------------------------- wrong settings: one clear error


@pytest.fixture(scope="session")
def untrusted_ca(tmp_path_factory) -> Path:
    """A CA that did not sign the servers' certificate."""
    from stream_app.tools.certs import create_ca

    return create_ca(tmp_path_factory.mktemp("other-ca"), "some other CA").ca_cert


def host_port(url: str) -> str:
    return url.split("//", 1)[1].split("@")[-1].split("/", 1)[0]


def run_command(args: list[str], env: dict[str, str], timeout_s: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream_app.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout_s)


BAD_SETTINGS = {
    # case: (command, settings changed, the error's text)
    "kafka-wrong-password": (
        ["worker"], {f"{KAFKA}SASL_PASSWORD": "not-the-password"},
        "kafka.sasl_password: the Kafka broker at {kafka} refused the credentials of user 'casting'"),
    "kafka-untrusted-certificate": (
        ["simulate", "--castings", "1", "--no-progress"], {f"{KAFKA}SSL_CAFILE": "{other_ca}"},
        "kafka.ssl_cafile: the certificate of the Kafka broker at {kafka} is not trusted"),
    "kafka-plaintext-client-on-tls-port": (
        ["replay", "--no-progress"],
        {f"{KAFKA}SECURITY_PROTOCOL": "PLAINTEXT", f"{KAFKA}SASL_MECHANISM": "", f"{KAFKA}SASL_USERNAME": "",
         f"{KAFKA}SASL_PASSWORD": ""},
        "kafka.security_protocol: the Kafka broker at {kafka} speaks TLS but kafka.security_protocol is PLAINTEXT"),
    "redis-wrong-password": (
        ["replay", "--no-progress"], {f"{REDIS}PASSWORD": "not-the-password"},
        "redis.password: Redis at {redis} refused user 'casting' with the password given"),
    "redis-untrusted-certificate": (
        ["worker"], {f"{REDIS}SSL_CAFILE": "{other_ca}"},
        "redis.ssl_cafile: the certificate of Redis at {redis} is not trusted"),
    "redis-plaintext-client-on-tls-port": (
        ["worker"], {f"{REDIS}URL": "redis://casting@{redis}/0"},
        "redis.url: Redis at {redis} speaks TLS but redis.url starts with redis://"),
    "dataset-kafka-wrong-password": (
        ["dataset", "--labels", "{labels}", "--out", "{out}", "--no-progress"],
        {f"{KAFKA}SASL_PASSWORD": "not-the-password"},
        "kafka.sasl_password: the Kafka broker at {kafka} refused the credentials of user 'casting'"),
    "dashboard-kafka-untrusted-certificate": (
        ["dashboard", "--port", "0"], {f"{KAFKA}SSL_CAFILE": "{other_ca}"},
        "kafka.ssl_cafile: the certificate of the Kafka broker at {kafka} is not trusted"),
    # and the other way round, against the plaintext stack
    "kafka-tls-client-on-plaintext-port": (
        ["simulate", "--castings", "1", "--no-progress"], {f"{KAFKA}BOOTSTRAP_SERVERS": "{plain_kafka}"},
        "kafka.security_protocol: the Kafka broker at {plain_kafka} does not speak TLS but kafka.security_protocol "
        "is SASL_SSL"),
    "redis-tls-client-on-plaintext-port": (
        ["worker"], {f"{REDIS}URL": "rediss://{plain_redis}/0"},
        "redis.url: Redis at {plain_redis} does not speak TLS but redis.url starts with rediss://"),
}


@pytest.mark.parametrize("case", list(BAD_SETTINGS))
def test_wrong_settings_stop_the_command_with_one_error_naming_the_setting(case, secured_env, untrusted_ca,
                                                                          tiny_checkpoint, tmp_path):
    command, changes, expected = BAD_SETTINGS[case]
    plain = load_config(environ=os.environ)  # the plaintext stack's settings
    labels = tmp_path / "labels.csv"
    labels.write_text("casting_id,label\nC-1,1\n")
    places = {"kafka": secured_env[f"{KAFKA}BOOTSTRAP_SERVERS"], "other_ca": str(untrusted_ca),
              "redis": host_port(secured_env[f"{REDIS}URL"]),
              "plain_kafka": plain.kafka.bootstrap_servers[0], "plain_redis": host_port(plain.redis.url),
              "labels": str(labels), "out": str(tmp_path / "dataset.parquet")}
    command = [arg.format(**places) for arg in command]
    env = connection_free_environ({**secured_env, **{k: v.format(**places) for k, v in changes.items()}})
    env.update({f"{ENV_PREFIX}MODEL__CHECKPOINT": str(tiny_checkpoint), f"{ENV_PREFIX}MODEL__DEVICE": "cpu",
                f"{ENV_PREFIX}METRICS__PORT": "0"})
    result = run_command(command, env)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    errors = [line for line in output.splitlines() if " ERROR " in line]
    assert len(errors) == 1, output  # one error, not a retry storm
    assert expected.format(**places) in errors[0], output
    assert "unreachable" not in output, output  # not taken for an outage
    for secret in (secured_env[f"{KAFKA}SASL_PASSWORD"], secured_env[f"{REDIS}PASSWORD"], "not-the-password"):
        assert secret not in output


# --------------------------------------------------------------------------- secrets never leak


def test_no_password_in_logs_dead_letters_metrics_help_or_files_of_a_secured_run(
        secured_service_config, secured_env, worker_factory, reader_factory, tmp_path):
    from stream_app.tools import devstack_secure

    passwords = devstack_secure.read_passwords(devstack_secure.SecuredSettings.from_env()).all()
    cfg = secured_service_config(topics={"partitions": 2})
    env = connection_free_environ({**secured_env, f"{ENV_PREFIX}APP_ID": cfg.app_id,
                                   f"{ENV_PREFIX}TOPICS__SENSORS": cfg.topics.sensors,
                                   f"{ENV_PREFIX}TOPICS__PREDICTIONS": cfg.topics.predictions,
                                   f"{ENV_PREFIX}TOPICS__DEADLETTER": cfg.topics.deadletter,
                                   f"{ENV_PREFIX}MODEL__CHECKPOINT": str(cfg.model.checkpoint),
                                   f"{ENV_PREFIX}MODEL__DEVICE": "cpu", f"{ENV_PREFIX}METRICS__PORT": "0"})
    worker = worker_factory(cfg).start()
    worker.wait_for(worker.ready, "the secured worker to be ready")

    # the simulator (with bad messages, so there are dead letters) and the replay, as a user runs them
    simulate = run_command(["-v", "simulate", "--castings", "6", "--bad-share", "0.3", "--seed", "5",
                            "--prefix", "LEAK", "--no-progress"], env)
    assert simulate.returncode == 0, simulate.stderr
    castings = make_castings(4, seed=8, prefix="LEAKB")
    produce_castings(cfg, castings)
    predictions = reader_factory(cfg, cfg.topics.predictions)
    predictions.read_distinct_keys(10, 180, worker)
    replay = run_command(["-v", "replay", "--no-progress"], env)
    assert replay.returncode == 0, replay.stderr

    deadletters = reader_factory(cfg, cfg.topics.deadletter)
    deadletters.read_until(lambda records: len(records) > 0, 60)
    replayed = reader_factory(cfg, f"{cfg.topics.deadletter}.replay")
    replayed.read_until(lambda records: len(records) > 0, 60)
    assert all(json.loads(r.value)["reason"] for r in deadletters.records)
    metrics_page = worker.metrics_text()
    health = json.dumps(worker.health()[1])
    assert worker.terminate() == 0, worker.log_tail()

    helps = []
    runner = CliRunner()
    for args in ([], ["worker"], ["simulate"], ["replay"], ["demo"], ["devstack"], ["devstack", "up"]):
        result = runner.invoke(cli, [*args, "--help"], env=env)
        assert result.exit_code == 0, result.output
        helps.append(result.output)

    written = {
        "worker log": worker.log_path.read_text(errors="replace"),
        "simulator output": simulate.stdout + simulate.stderr,
        "replay output": replay.stdout + replay.stderr,
        "dead letters": b"\n".join(r.value for r in deadletters.records + replayed.records).decode(errors="replace"),
        "predictions": b"\n".join(r.value for r in predictions.records).decode(errors="replace"),
        "metrics": metrics_page,
        "health": health,
        "--help": "\n".join(helps),
        "config repr": repr(cfg) + str(cfg.kafka) + str(cfg.redis),
    }
    # files the worker wrote: its config file, faust's data folder (the checkpoint of its local state)
    for path in [worker.config_path, *sorted(p for p in worker.datadir.rglob("*") if p.is_file())]:
        written[str(path)] = path.read_bytes().decode(errors="replace")
    assert "ingest consuming" in written["worker log"]  # the scan read a real log
    leaks = [f"{where} holds a password" for where, text in written.items() for secret in passwords
             if secret in text]
    assert not leaks
