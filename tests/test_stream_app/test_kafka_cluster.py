"""Against three Kafka brokers (replication 3, min.insync.replicas 2): brokers killed mid-stream, writes blocked
while two are down, and a group of workers that loses one member and gains another.

The cluster is `stream-app devstack up --kafka-cluster` (`make test-cluster` starts it); Redis is the plain
stack's. The tests SIGKILL and restart its nodes; each test starts with all three nodes up and every partition
fully replicated, and leaves the cluster so. Each prints its figures (time unready, time to recover, castings
sent / scored / lost / duplicated) for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import gc
import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from stream_app.config import StreamConfig
from stream_app.tools import devstack_kafka_cluster as cluster
from tests.test_stream_app.conftest import connection_free_environ
from tests.test_stream_app.harness import assert_predictions_match, make_castings
from tests.test_stream_app.test_faults import (
    INGESTED,
    assert_mid_stream,
    messages_of,
    predicted,
    produce_in_background,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.cluster,
    # kafka-python 3.0 leaves the socket of a refused connection attempt to the garbage collector, which warns;
    # here brokers are down on purpose and the test's own clients (readers, admin, simulator) retry them
    pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning"),
]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def collect_refused_sockets() -> Iterator[None]:
    """Collect those sockets before the test ends, while the filter above applies: left to a later
    collection they warn in whichever test runs then (a Redis Cluster test failed on them)."""
    yield
    gc.collect()


@pytest.fixture(scope="session")
def kafka_cluster_settings() -> cluster.ClusterSettings:
    return cluster.ClusterSettings.from_env()


@pytest.fixture(scope="session")
def kafka_cluster_env(kafka_cluster_settings) -> dict[str, str]:
    """The ``STREAM_APP__*`` settings of the three-broker cluster; fails (never skips) when it does not answer."""
    healthy, detail = cluster.cluster_answers(kafka_cluster_settings)
    if not healthy:
        pytest.fail(f"the Kafka cluster does not answer ({detail}); run `stream-app devstack up --kafka-cluster`")
    return cluster.client_env(kafka_cluster_settings)


@pytest.fixture
def nodes(kafka_cluster_settings, kafka_cluster_env) -> Iterator[cluster.ClusterSettings]:
    """The cluster, whole and fully replicated before and after the test (a node it killed is started again)."""
    restore_cluster(kafka_cluster_settings)
    yield kafka_cluster_settings
    restore_cluster(kafka_cluster_settings)


def restore_cluster(settings: cluster.ClusterSettings) -> None:
    cluster.up(settings)  # starts the nodes that are not running, waits for three brokers
    cluster.wait_fully_replicated(settings)


@pytest.fixture
def kafka_cluster_service_config(kafka_cluster_env, unique_name, tiny_checkpoint, request
                                 ) -> Callable[..., StreamConfig]:
    """`service_config` against the cluster: Kafka from its env (replication 3, min ISR 2), Redis the plain
    stack's (127.0.0.1:6379), or with `redis_cluster=True` the Redis Cluster's (the whole clustered stack);
    the topics are created up front by the worker's own `ensure_topics`."""
    from stream_app.config import load_config
    from stream_app.runtime.topics import ensure_topics

    def make(redis_cluster: bool = False, **overrides) -> StreamConfig:
        app_id = unique_name("cluster")
        topics = {"sensors": f"{app_id}.sensors", "predictions": f"{app_id}.predictions",
                  "deadletter": f"{app_id}.deadletter", **overrides.pop("topics", {})}
        model = {"checkpoint": str(tiny_checkpoint), "device": "cpu", "torch_threads": 1, **overrides.pop("model", {})}
        env = {**kafka_cluster_env, **(request.getfixturevalue("redis_cluster_env") if redis_cluster else {})}
        cfg = load_config(environ=connection_free_environ(env), app_id=app_id, topics=topics, model=model,
                          **overrides)
        assert cfg.redis.cluster == redis_cluster
        ensure_topics(cfg)
        return cfg

    return make


# --------------------------------------------------------------------------- helpers


class HealthLog:
    """Samples a worker's `/health` in the background: how long it was unready, and what it said."""

    def __init__(self, worker, interval_s: float = 0.25) -> None:
        self.worker = worker
        self.interval_s = interval_s
        self.samples: list[tuple[float, int, dict]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HealthLog:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            status, body = self.worker.health()
            self.samples.append((time.monotonic(), status, body))
            self._stop.wait(self.interval_s)

    def unready_s(self, since: float = 0.0) -> float:
        """Seconds not ready (samples other than 200) since `since` (monotonic)."""
        points = [(t, status) for t, status, _ in self.samples if t >= since]
        return sum(b[0] - a[0] for a, b in zip(points, points[1:], strict=False) if a[1] != 200)

    def kafka_down_seen(self) -> bool:
        return any(status == 503 and str(body.get("kafka", "")).startswith("down") for _, status, body in self.samples)


def leader_of(settings: cluster.ClusterSettings, topic: str, partition: int = 0) -> int:
    admin = cluster._admin(settings, settings.bootstrap_servers)
    try:
        for described in admin.describe_topics([topic]):
            for p in described["partitions"]:
                if p["partition_index"] == partition:
                    return int(p["leader_id"])
    finally:
        admin.close()
    raise AssertionError(f"no leader found for {topic}[{partition}]")


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float, *workers) -> float:
    """Poll until `condition` holds; seconds taken. Fails if time runs out or a worker exits."""
    began = time.monotonic()
    while not condition():
        for worker in workers:
            worker.check_alive()
        if time.monotonic() - began > timeout_s:
            tails = "\n".join(worker.log_tail(2000) for worker in workers)
            pytest.fail(f"timed out after {timeout_s:g}s waiting for {what}\n{tails}")
        time.sleep(0.1)
    return time.monotonic() - began


def scored_since(reader, wall_time: float) -> bool:
    """A prediction scored after `wall_time` (epoch seconds) has arrived."""
    from datetime import datetime

    reader.poll(100)
    return any(datetime.fromisoformat(json.loads(r.value)["scored_at"]).timestamp() > wall_time
               for r in reader.records)


def tally(predictions: list[dict], castings) -> dict[str, int]:
    counts = Counter(p["casting_id"] for p in predictions)
    expected = {c.casting_id for c in castings}
    return {"sent": len(castings), "scored": len(expected & set(counts)), "lost": len(expected - set(counts)),
            "duplicates": sum(n - 1 for n in counts.values())}


def report(title: str, figures: dict) -> None:
    print(f"\n[{title}] " + ", ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in figures.items()))


# --------------------------------------------------------------------------- the tests


def assert_replicated(settings: cluster.ClusterSettings, topics: list[str], partitions: int) -> None:
    """Each topic has `partitions` partitions of three replicas and min.insync.replicas 2."""
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = cluster._admin(settings, settings.bootstrap_servers)
    try:
        for topic in admin.describe_topics(topics):
            assert len(topic["partitions"]) == partitions, topic["name"]
            assert all(len(p["replica_nodes"]) == 3 for p in topic["partitions"]), topic["name"]
        for topic in topics:
            configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
            assert configs["topic"][topic]["min.insync.replicas"]["value"] == "2", topic
    finally:
        admin.close()


def test_topics_created_by_the_worker_are_replicated(nodes, kafka_cluster_service_config):
    cfg = kafka_cluster_service_config(topics={"partitions": 12})
    assert cfg.topics.replication_factor == 3 and cfg.topics.min_insync_replicas == 2
    assert_replicated(nodes, [cfg.topics.sensors, cfg.topics.predictions, cfg.topics.deadletter], 12)


def test_broker_killed_mid_stream_then_a_second_one_briefly(nodes, kafka_cluster_service_config, worker_factory,
                                                           reader_factory, tiny_checkpoint):
    cfg = kafka_cluster_service_config(redis_cluster=True, topics={"partitions": 6})  # the whole clustered stack
    castings = make_castings(120, seed=41, prefix="B")
    predictions = reader_factory(cfg, cfg.topics.predictions)
    worker = worker_factory(cfg).start()
    worker.wait_for(worker.ready, "the worker ready", timeout_s=180)
    release = threading.Event()
    figures: dict = {}
    with HealthLog(worker) as health:
        began = time.monotonic()
        producer = produce_in_background(cfg, castings, rate_per_s=messages_of(castings) / 40.0, hold_back=release)
        try:
            due = len(castings) // 5
            worker.wait_for(lambda: worker.metric(INGESTED) > 0 and predicted(predictions) >= due,
                            f"readings ingested and {due} predictions")
            assert_mid_stream(worker, predictions, castings)
            victim = leader_of(nodes, cfg.topics.sensors)  # the busiest kind of node: it leads what we read
            figures["first_kill_node"] = victim
            figures["first_kill_at_scored"] = predicted(predictions)
            killed_at, killed_wall = time.monotonic(), time.time()
            assert cluster.kill_node(nodes, victim)
            # recovered: a casting ends and is scored after the kill (leaders moved, ISRs shrank)
            figures["first_new_prediction_s"] = wait_until(lambda: scored_since(predictions, killed_wall),
                                                           "a prediction scored with one broker down", 120, worker)
            worker.wait_for(worker.ready, "the worker ready with one broker down", timeout_s=120)
            figures["first_unready_s"] = health.unready_s(killed_at)
            restarted_at = time.monotonic()
            cluster.start_node(nodes, victim)
            figures["rejoin_s"] = time.monotonic() - restarted_at + cluster.wait_fully_replicated(nodes)
            second = next(n for n in cluster.NODE_IDS if n != victim)
            assert predicted(predictions) < len(castings) * 0.8, "the second kill must land mid-stream too"
            figures["second_kill_node"] = second
            second_killed_at, second_wall = time.monotonic(), time.time()
            assert cluster.kill_node(nodes, second)
            release.set()  # the stream's last fifth: castings that can only be scored after this kill
            figures["second_new_prediction_s"] = wait_until(lambda: scored_since(predictions, second_wall),
                                                            "a prediction scored after the second kill", 120, worker)
            cluster.start_node(nodes, second)  # briefly down: back as soon as the stream goes on without it
            figures["second_down_s"] = time.monotonic() - second_killed_at
            worker.wait_for(worker.ready, "the worker ready after the second broker is back", timeout_s=120)
            figures["second_unready_s"] = health.unready_s(second_killed_at)
        finally:
            release.set()
        producer.join(timeout=180)
        predictions.read_distinct_keys(len(castings), 240, worker)
        figures["stream_s"] = time.monotonic() - began
    worker.check_alive()
    assert worker.starts == 1, "the worker recovered without a restart"
    figures.update(tally(predictions.json(), castings))
    report("two broker kills", figures)
    assert_predictions_match(predictions.json(), castings, tiny_checkpoint)
    assert worker.ready()


def test_two_brokers_down_blocks_writes_and_the_worker_says_so(nodes, kafka_cluster_service_config,
                                                               worker_factory, reader_factory, tiny_checkpoint):
    """With two of three brokers down no write can be acknowledged (min ISR 2, and the KRaft quorum is lost):
    the worker holds the casting in hand, /health is 503 naming kafka, the simulator blocks; when one broker
    comes back both go on and nothing is lost."""
    from stream_app.tools.simulate import run_simulation

    cfg = kafka_cluster_service_config(topics={"partitions": 1})
    castings = make_castings(4, seed=51, prefix="Q")
    warm_up, pending, *later = castings
    predictions = reader_factory(cfg, cfg.topics.predictions)
    worker = worker_factory(cfg).start()
    worker.wait_for(worker.ready, "the worker ready", timeout_s=180)
    # one casting through the whole path first: both consumer groups joined, the producer knows its leaders
    run_simulation(cfg, [warm_up], strands=1, chunk_size=10, progress=False)
    wait_until(lambda: predicted(predictions) >= 1, "the warm-up casting's prediction", 120, worker)
    survivor = leader_of(nodes, cfg.topics.sensors)  # it still serves the casting's readings to the worker
    down = [n for n in cluster.NODE_IDS if n != survivor]
    figures: dict = {"survivor": survivor}
    with HealthLog(worker) as health:
        # the casting is acknowledged by all three brokers while the worker is paused, then two brokers die:
        # when the worker goes on, it has the casting and cannot write its scoring request or prediction
        worker.proc.send_signal(signal.SIGSTOP)
        try:
            run_simulation(cfg, [pending], strands=1, chunk_size=10, progress=False)
            for node_id in down:
                assert cluster.kill_node(nodes, node_id)
        finally:
            worker.proc.send_signal(signal.SIGCONT)
        killed_at = time.monotonic()
        figures["to_503_s"] = wait_until(
            lambda: (lambda h: h[0] == 503 and str(h[1].get("kafka", "")).startswith("down"))(worker.health()),
            "/health 503 with kafka down", 120, worker)
        blocked: dict = {}
        simulator = threading.Thread(
            target=lambda: blocked.update(summary=run_simulation(cfg, later, strands=1, chunk_size=10,
                                                                 progress=False)), daemon=True)
        simulator.start()
        time.sleep(10)  # unready stays unready, the prediction stays pending, the simulator stays blocked
        status, body = worker.health()
        assert status == 503 and body["kafka"].startswith("down"), body
        assert predicted(predictions) == 1, "only the warm-up casting is predicted"
        assert simulator.is_alive() and "summary" not in blocked, "the simulator must wait, not drop or fail"
        figures["unready_before_restart_s"] = time.monotonic() - killed_at
        restarted_at = time.monotonic()
        cluster.start_node(nodes, down[0], wait=False)  # two of three: quorum and min ISR can be met again
        figures["prediction_after_restart_s"] = wait_until(lambda: predicted(predictions) >= 2,
                                                           "the pending prediction", 180, worker)
        figures["ready_after_restart_s"] = wait_until(worker.ready, "/health 200", 120, worker)
        simulator.join(timeout=180)
        assert "summary" in blocked, "the simulator's sends went through once a broker was back"
        figures["simulator_unblocked_after_s"] = time.monotonic() - restarted_at
        predictions.read_distinct_keys(len(castings), 120, worker)
        assert health.kafka_down_seen()
    figures.update(tally(predictions.json(), castings))
    report("two brokers down", figures)
    assert_replicated(nodes, [f"{cfg.app_id}.scoring-requests"], 1)  # faust created it: replicated as ours
    assert worker.starts == 1
    assert_predictions_match(predictions.json(), castings, tiny_checkpoint)


def test_three_workers_twelve_partitions_one_killed_one_added(nodes, kafka_cluster_service_config, worker_factory,
                                                               reader_factory, tiny_checkpoint):
    cfg = kafka_cluster_service_config(redis_cluster=True, topics={"partitions": 12})  # the whole clustered stack
    castings = make_castings(120, seed=61, prefix="W")
    predictions = reader_factory(cfg, cfg.topics.predictions)
    workers = [worker_factory(cfg).start() for _ in range(3)]
    for worker in workers:  # all up before the stream starts
        worker.wait_for(worker.ready, "three workers ready", timeout_s=240)
    release = threading.Event()
    figures: dict = {}
    began = time.monotonic()
    producer = produce_in_background(cfg, castings, rate_per_s=messages_of(castings) / 40.0, hold_back=release)
    try:
        due = len(castings) // 4
        first, *others = workers

        def all_share_the_stream() -> bool:
            for worker in others:
                worker.check_alive()
            return all(w.metric(INGESTED) > 0 for w in workers) and predicted(predictions) >= due

        first.wait_for(all_share_the_stream, f"three workers ingesting and {due} predictions", timeout_s=180)
        assert_mid_stream(first, predictions, castings)
        figures["killed_at_scored"] = predicted(predictions)
        first.kill()
        fourth = worker_factory(cfg).start()
        # The held-back fifth of the stream goes out once the added worker owns partitions: by then the
        # first four fifths may all be committed, and only new messages give it something to ingest.
        owns = f"ingest assigned {cfg.topics.sensors}["
        fourth.wait_for(lambda: owns in fourth.log_tail(1_000_000), "the added worker owning partitions",
                        timeout_s=240)
        release.set()
        fourth.wait_for(lambda: fourth.metric(INGESTED) > 0, "the added worker ingesting", timeout_s=240)
        figures["added_ingesting_at_scored"] = predicted(predictions)
        assert predicted(predictions) < len(castings), "the added worker must join mid-stream"
    finally:
        release.set()
    producer.join(timeout=180)
    survivors = [*others, fourth]
    predictions.read_distinct_keys(len(castings), 240, *survivors)
    figures["stream_s"] = time.monotonic() - began
    figures.update(tally(predictions.json(), castings))
    report("three workers, one killed, one added", figures)
    assert_predictions_match(predictions.json(), castings, tiny_checkpoint)
