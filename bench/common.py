"""Shared helpers of the benchmarks: machine line, checkpoints, unique topics, worker processes, cleanup.

Every benchmark run uses its own topics, app ids and Redis prefixes (``bench-<uuid>``), and deletes
only what it created. Worker processes (`stream_app.tools.worker_process.WorkerProcess`, the harness the tests
and the demo use) are started here and always stopped in ``finally`` blocks.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from stream_app.config import StreamConfig, load_config  # noqa: E402
from stream_app.tools.worker_process import WorkerProcess  # noqa: E402

VARIANT_CONFIGS = ("default", "lightweight")


def machine_line() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return (f"{platform.node()}: nproc={os.cpu_count()}, {model}, Python {platform.python_version()}, "
            f"torch {torch.__version__}")


DOC = ROOT / "docs" / "BENCHMARKS.md"


def write_doc_block(block: str, lines: list[str], argv: list[str] | None) -> None:
    """Replace the generated block between `<!-- bench:BLOCK -->` and `<!-- /bench:BLOCK -->` in
    docs/BENCHMARKS.md with `lines`, headed by the command that produced them (`argv`, or the process's own
    arguments when None), the date and the machine."""
    begin, end = f"<!-- bench:{block} -->", f"<!-- /bench:{block} -->"
    text = DOC.read_text()
    if text.count(begin) != 1 or text.count(end) != 1:
        raise RuntimeError(f"{DOC} needs exactly one {begin} ... {end} pair")
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    args = sys.argv[1:] if argv is None else argv
    command = " ".join([".venv/bin/python", str(Path(sys.argv[0]).resolve().relative_to(ROOT)), *args])
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    body = [begin, f"`{command}` ({stamp}; {machine_line()}):", "", *lines, end]
    DOC.write_text(head + "\n".join(body) + tail)
    print(f"wrote the table into {DOC.relative_to(ROOT)} ({block})")


def unique_name(kind: str) -> str:
    return f"bench-{kind}-{uuid.uuid4().hex[:10]}"


def model_config(variant: str) -> dict:
    """``default`` is the product's configs/lstm.yaml (the shipped checkpoint's), else a design variant."""
    from models.config import PRODUCT_CONFIG, load_lstm_config
    from models.lstm_model import LSTMModelVariants

    return load_lstm_config(PRODUCT_CONFIG).to_dict() if variant == "default" else LSTMModelVariants.all()[variant]


def build_model(variant: str, seed: int = 0):
    """An untrained model of the variant with fitted normalisation (weights do not matter for speed)."""
    import torch

    from models.lstm_model import SteelDefectLSTM
    from models.synthetic import generate_castings

    torch.manual_seed(seed)
    model = SteelDefectLSTM(model_config(variant))
    model.fit_normalization(generate_castings(16, seed=seed + 1).sequences)
    return model.eval()


def write_checkpoint(variant: str, directory: Path) -> Path:
    """checkpoints/default/model.pt when it exists and variant is default, else a fresh untrained one."""
    from models.checkpoint import DEFAULT_CHECKPOINT, save_checkpoint

    if variant == "default" and DEFAULT_CHECKPOINT.exists():
        return DEFAULT_CHECKPOINT
    path = directory / f"{variant}.pt"
    save_checkpoint(path, build_model(variant), metadata={"purpose": "benchmark (untrained)"})
    return path


def bench_config(app_id: str, checkpoint: Path, partitions: int = 4, **batching) -> StreamConfig:
    base = load_config(environ={})
    topics = base.topics.model_copy(update={
        "sensors": f"{app_id}.sensors", "predictions": f"{app_id}.predictions",
        "deadletter": f"{app_id}.deadletter", "partitions": partitions,
    })
    return base.model_copy(update={
        "app_id": app_id, "topics": topics,
        "model": base.model.model_copy(update={"checkpoint": checkpoint, "device": "cpu", "torch_threads": 1}),
        "batching": base.batching.model_copy(update=batching),
    })


def bench_worker(cfg: StreamConfig, entry: list[str] | None = None, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> WorkerProcess:
    """`stream-app worker` (or another entry point with the same CLI) as a subprocess, in a temporary folder;
    a context manager that always stops it (SIGTERM, then SIGKILL) and removes the folder. `env`: extra
    environment variables that are not config; `cwd`: where it runs (default the repository, whose code
    `python -m stream_app.cli` then imports)."""
    return WorkerProcess(cfg, entry=entry, env=env, cwd=cwd or ROOT)


def create_topics(cfg: StreamConfig, names: Iterable[str] | None = None) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    from stream_app.runtime.connections import kafka_python_kwargs

    names = list(names or (cfg.topics.sensors, cfg.topics.predictions, cfg.topics.deadletter))
    admin = KafkaAdminClient(**kafka_python_kwargs(cfg.kafka))
    try:
        admin.create_topics([NewTopic(n, cfg.topics.partitions, 1) for n in names])
    finally:
        admin.close()


def delete_topics(cfg: StreamConfig, prefix: str) -> None:
    """Delete the topics whose names start with `prefix` (a bench-<uuid> this run made), and the Quix
    peer's changelog/repartition topics, which carry it inside their names."""
    from kafka.admin import KafkaAdminClient

    from stream_app.runtime.connections import kafka_python_kwargs

    assert prefix.startswith("bench-"), prefix
    admin = KafkaAdminClient(**kafka_python_kwargs(cfg.kafka))
    try:
        mine = [t for t in admin.list_topics()
                if t.startswith(prefix) or (t.startswith(("changelog__", "repartition__")) and prefix in t)]
        if mine:
            admin.delete_topics(mine)
    except Exception as exc:  # cleanup must not hide the benchmark's own error
        print(f"warning: could not delete topics {prefix}*: {exc}", file=sys.stderr)
    finally:
        admin.close()


def delete_redis_prefix(cfg: StreamConfig, prefix: str | None = None) -> int:
    from stream_app.runtime.connections import create_redis_sync

    prefix = prefix or cfg.redis_prefix
    assert "bench-" in prefix, prefix
    client = create_redis_sync(cfg.redis)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=5000))
        for i in range(0, len(keys), 5000):
            client.delete(*keys[i: i + 5000])
        return len(keys)
    finally:
        client.close()


def produce(cfg: StreamConfig, messages: Iterable[tuple[bytes, bytes]], topic: str | None = None) -> int:
    """Send (key, value) pairs as fast as the client goes; returns how many."""
    from kafka import KafkaProducer

    from stream_app.runtime.connections import kafka_python_kwargs

    producer = KafkaProducer(**kafka_python_kwargs(cfg.kafka), linger_ms=20, batch_size=1 << 20,
                             max_request_size=8 << 20, acks=1)
    count = 0
    try:
        for key, value in messages:
            producer.send(topic or cfg.topics.sensors, key=key, value=value)
            count += 1
        producer.flush()
    finally:
        producer.close()
    return count


def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def wait_for(predicate, timeout_s: float, interval_s: float = 0.1, check=lambda: None) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        check()
        if predicate():
            return True
        time.sleep(interval_s)
    return False
