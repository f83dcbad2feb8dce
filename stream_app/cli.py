"""The `stream-app` command line: parse arguments, configure logging, call one function, return a code."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from stream_app.errors import StreamAppError
from stream_app.logging_setup import configure_logging

log = logging.getLogger("stream_app")


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def cli(verbose: bool) -> None:
    """Streaming defect predictor for steel continuous-casting lines."""
    configure_logging(verbose)


@cli.group()
@click.option(
    "--dir", "root", type=click.Path(path_type=Path), default=None,
    help="Data, logs and pid files (default: $DEVSTACK_DIR, else .devstack/ in the current directory).",
)
@click.pass_context
def devstack(ctx: click.Context, root: Path | None) -> None:
    """Local Kafka (KRaft) and Redis for development and tests. Ports: $DEVSTACK_KAFKA_PORT,
    $DEVSTACK_KAFKA_CONTROLLER_PORT, $DEVSTACK_REDIS_PORT ($DEVSTACK_REDIS_CLUSTER_PORT: --redis-cluster)."""
    from stream_app.tools.devstack import DevstackSettings

    ctx.obj = DevstackSettings.from_env(root)


def _print_status(rows) -> bool:
    for row in rows:
        click.echo(row.line())
    return all(row.healthy for row in rows)


def _secured_option(fn):
    return click.option(
        "--secured", is_flag=True,
        help="The secured stack instead: Kafka SASL_SSL (SCRAM-SHA-512) and Redis TLS with an ACL user, on "
             "$DEVSTACK_SECURED_KAFKA_PORT (9094) and $DEVSTACK_SECURED_REDIS_PORT (6380); its client settings "
             "go to <dir>/secured/client.env.",
    )(fn)


def _kafka_cluster_option(fn):
    return click.option(
        "--kafka-cluster", is_flag=True,
        help="The three-node Kafka cluster instead (KRaft, replication 3, min.insync.replicas 2) on "
             "$DEVSTACK_KAFKA_CLUSTER_PORT (19092) and the next two ports; its client settings go to "
             "<dir>/kafka-cluster/client.env.",
    )(fn)


def _redis_cluster_option(fn):
    return click.option(
        "--redis-cluster", is_flag=True,
        help="A Redis Cluster of three masters instead (Debian's redis-server in cluster mode, AOF) on "
             "$DEVSTACK_REDIS_CLUSTER_PORT (17001) and the next two; clients: "
             "STREAM_APP__REDIS__URL=redis://127.0.0.1:17001/0 STREAM_APP__REDIS__CLUSTER=true.",
    )(fn)


def _stack(settings, secured: bool, redis_cluster: bool = False, kafka_cluster: bool = False):
    """The module and settings of the plaintext, the secured stack, the Redis Cluster or the Kafka cluster
    (same up/down/status API)."""
    if sum((secured, redis_cluster, kafka_cluster)) > 1:
        raise click.UsageError("--secured, --redis-cluster and --kafka-cluster are separate stacks: start them one "
                               "at a time")
    if kafka_cluster:
        from stream_app.tools import devstack_kafka_cluster

        return devstack_kafka_cluster, devstack_kafka_cluster.ClusterSettings.from_env(settings.root)
    if redis_cluster:
        from stream_app.tools import devstack_redis_cluster

        return devstack_redis_cluster, devstack_redis_cluster.RedisClusterSettings.from_env(settings.root)
    if not secured:
        from stream_app.tools import devstack as ds

        return ds, settings
    from stream_app.tools import devstack_secure

    return devstack_secure, devstack_secure.SecuredSettings.from_env(settings.root)


@devstack.command("up")
@_secured_option
@_redis_cluster_option
@_kafka_cluster_option
@click.option("--prometheus", is_flag=True,
              help="Also start Prometheus (Debian's package) on $DEVSTACK_PROMETHEUS_PORT (9090), scraping the "
                   "worker ($DEVSTACK_SCRAPE_WORKER, 127.0.0.1:9464) and the dashboard ($DEVSTACK_SCRAPE_DASHBOARD, "
                   "127.0.0.1:8050) with the alerting rules in configs/prometheus-alerts.yml.")
@click.pass_obj
def devstack_up(settings, secured: bool, redis_cluster: bool, kafka_cluster: bool, prometheus: bool) -> None:
    """Start Kafka and Redis (idempotent) and wait until both answer."""
    if (secured or redis_cluster or kafka_cluster) and prometheus:
        raise click.UsageError("--prometheus goes with the plaintext stack: start it with a separate `devstack up`")
    stack, stack_settings = _stack(settings, secured, redis_cluster, kafka_cluster)
    healthy = _print_status(stack.up(stack_settings, prometheus=True) if prometheus else stack.up(stack_settings))
    if kafka_cluster:
        click.echo(f"client settings: {stack_settings.client_env_file}\n"
                   f"  use them with: set -a; . {stack_settings.client_env_file}; set +a")
    if secured:
        click.echo(f"client settings (passwords included): {stack_settings.client_env_file}\n"
                   f"  use them with: set -a; . {stack_settings.client_env_file}; set +a")
    sys.exit(0 if healthy else 1)


@devstack.command("down")
@_secured_option
@_redis_cluster_option
@_kafka_cluster_option
@click.pass_obj
def devstack_down(settings, secured: bool, redis_cluster: bool, kafka_cluster: bool) -> None:
    """Stop the processes that `up` started (and only those)."""
    stack, stack_settings = _stack(settings, secured, redis_cluster, kafka_cluster)
    rows = stack.down(stack_settings)
    _print_status(rows)
    sys.exit(1 if any(row.running for row in rows) else 0)


@devstack.command("status")
@_secured_option
@_redis_cluster_option
@_kafka_cluster_option
@click.pass_obj
def devstack_status(settings, secured: bool, redis_cluster: bool, kafka_cluster: bool) -> None:
    """Ask each service; exit 0 only if all are healthy."""
    stack, stack_settings = _stack(settings, secured, redis_cluster, kafka_cluster)
    sys.exit(0 if _print_status(stack.status(stack_settings)) else 1)


def _processes(value: str) -> str:
    """`replay --processes`: 'auto' or a whole number of at least 1 (as text)."""
    if value == "auto" or (value.isdigit() and int(value) >= 1):
        return value
    raise click.BadParameter(f"{value!r} is neither 'auto' nor a whole number of at least 1",
                             param_hint="--processes")


def _config_option(fn):
    return click.option(
        "--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None, help="YAML config (default: configs/stream.yaml); STREAM_APP__* variables override it.",
    )(fn)


@cli.command()
@_config_option
@click.option("--datadir", type=click.Path(path_type=Path), default=None, help="faust's local state folder.")
def worker(config_path: Path | None, datadir: Path | None) -> None:
    """Run a streaming worker (start several with the same app_id to share the partitions)."""
    from stream_app.config import load_config
    from stream_app.runtime.worker import run_worker

    cfg = load_config(config_path)
    level = logging.getLevelName(logging.getLogger().level).lower()
    run_worker(cfg, loglevel={"warning": "warn", "critical": "crit"}.get(level, level), datadir=datadir)


@cli.command()
@_config_option
@click.option("--castings", default=100, show_default=True, help="How many castings (0 with --dataset: all).")
@click.option("--strands", default=4, show_default=True, help="Strands cast in parallel (interleaved castings).")
@click.option("--rate", type=float, default=0.0, show_default=True,
              help="Messages per second; 0 = as fast as possible.")
@click.option("--chunk-size", default=1, show_default=True, help="Readings per message (1 = single readings).")
@click.option("--bad-share", type=float, default=0.0, show_default=True,
              help="Share of extra malformed messages to inject (0..1), for dead-letter drills.")
@click.option("--seed", default=0, show_default=True, help="Generator seed (castings and bad messages).")
@click.option("--dataset", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Produce these castings instead: a readings file (.parquet/.csv, the dataset format, its "
                   "own casting ids) or a generator NPZ.")
@click.option("--prefix", default=None, help="Casting id prefix: ids are <prefix>-S<strand>-<n> "
                   "(default prefix: SIM-<time>, unique per run).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def simulate(config_path, castings, strands, rate, chunk_size, bad_share, seed, dataset, prefix, no_progress) -> None:
    """Produce synthetic castings to the sensor topic, several strands interleaved."""
    import time

    from stream_app.config import load_config
    from stream_app.extras import require_extra

    require_extra("simulate", "simulate")
    from stream_app.tools.simulate import load_castings, name_by_strand, run_simulation

    if not 0.0 <= bad_share <= 1.0:
        raise click.BadParameter("must lie in 0..1", param_hint="--bad-share")
    cfg = load_config(config_path)
    prefix = prefix or time.strftime("SIM-%Y%m%d%H%M%S")
    items = load_castings(count=castings, seed=seed, prefix=prefix, channels=cfg.validation.channels,
                          dataset=dataset)
    if not (dataset and Path(dataset).suffix.lower() in (".parquet", ".csv")):  # a readings file keeps its ids
        items = name_by_strand(items, prefix, strands)
    summary = run_simulation(cfg, items, strands=strands, rate_per_s=rate or None, chunk_size=chunk_size,
                             bad_share=bad_share, seed=seed, progress=not no_progress)
    click.echo(f"produced {summary.castings} castings ({summary.readings} readings in {summary.messages} messages, "
               f"{summary.bad_messages} malformed) to {cfg.topics.sensors} in {summary.seconds:.1f}s")


@cli.command()
@_config_option
@click.option("--from", "start", default="earliest", show_default=True,
              help="'earliest' or an ISO-8601 time: replay castings whose readings start at/after it.")
@click.option("--until", default=None, help="ISO-8601 time to stop at (default: the end offsets seen at start).")
@click.option("--output-topic", default=None, help="Predictions topic (default: <predictions>.replay).")
@click.option("--deadletter-topic", default=None, help="Dead-letter topic (default: <deadletter>.replay).")
@click.option("--app-id", default=None, help="Replay's own id, hence Redis prefix (default: <app_id>-replay-<time>).")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Backtest a candidate model instead of model.checkpoint; its predictions go to "
                   "<predictions>.replay-<its version> unless --output-topic says otherwise.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--processes", default="1", show_default=True, callback=lambda ctx, param, value: _processes(value),
              help="Replay processes sharing the partitions (one process keeps about 1.3 of 2 cores busy); "
                   "'auto': one per core, at most one per partition.")
def replay(config_path, start, until, output_topic, deadletter_topic, app_id, checkpoint, no_progress,
           processes) -> None:
    """Re-score a historical sensor topic without touching the live worker's state."""
    import asyncio
    import contextlib
    import time

    from stream_app.config import load_config
    from stream_app.runtime.replay_parallel import ParallelReplay
    from stream_app.tools.progress import ReplayProgress

    base = load_config(config_path)
    app_id = app_id or f"{base.app_id}-replay-{time.strftime('%Y%m%d%H%M%S')}"
    if app_id == base.app_id:
        raise click.BadParameter("must differ from the live worker's app_id", param_hint="--app-id")
    cfg = base.model_copy(update={"app_id": app_id})
    with contextlib.ExitStack() as stack:
        if processes == "1":
            import torch

            from stream_app.runtime.heap import settle_heap
            from stream_app.runtime.replay import run_replay
            from stream_app.service.model_runner import load_scorer

            parallel = None
            # one intra-op thread unless set: the event loop reads and ingests on the other core while the
            # forward runs (1.35x two threads on 2 cores, docs/BENCHMARKS.md section 5b)
            torch.set_num_threads(cfg.model.torch_threads or 1)
            scorer = load_scorer(cfg.model, cfg.validation.channels, checkpoint)  # refuses a model of other channels
            settle_heap()  # torch and the model are what this process keeps (runtime/heap.py)
            version = scorer.version
        else:  # the processes load the model (each checks its channels); this one needs no torch
            parallel = stack.enter_context(ParallelReplay(cfg, checkpoint, processes))
            version = parallel.model_version()
        if checkpoint is not None:  # a candidate's backtest never mixes with the current model's
            output_topic = output_topic or f"{cfg.topics.predictions}.replay-{version}"
            deadletter_topic = deadletter_topic or f"{cfg.topics.deadletter}.replay-{version}"
        progress = stack.enter_context(contextlib.closing(ReplayProgress(enabled=not no_progress)))
        topics = {"predictions_topic": output_topic, "deadletter_topic": deadletter_topic}
        if parallel is None:
            summary = asyncio.run(run_replay(cfg, scorer, start=start, until=until, on_progress=progress, **topics))
        else:
            summary = parallel.run(start=start, until=until, on_progress=progress, **topics)
    for line in summary.lines():
        click.echo(line)
    click.echo(f"model {version} -> {output_topic or cfg.topics.predictions + '.replay'}")


@cli.command()
@_config_option
@click.option("--castings", default=40, show_default=True, help="Castings to simulate.")
@click.option("--rate", type=float, default=400.0, show_default=True, help="Messages per second.")
@click.option("--chunk-size", default=10, show_default=True, help="Readings per message.")
@click.option("--bad-share", type=float, default=0.01, show_default=True, help="Share of malformed messages.")
@click.option("--timeout", "timeout_s", type=float, default=300.0, show_default=True, help="Give up after (s).")
@click.option("--linger", "linger_s", type=float, default=0.0, show_default=True,
              help="Keep the control-room page (and the worker) up this many seconds after the last prediction.")
def demo(config_path, castings, rate, chunk_size, bad_share, timeout_s, linger_s) -> None:
    """Start the local stack, a worker and the control-room page (its URL is printed), simulate castings, show
    predictions live, stop it all."""
    from stream_app.config import load_config
    from stream_app.extras import require_extra

    require_extra("simulate", "demo")
    from stream_app.tools.demo import run_demo

    cfg = load_config(config_path)
    try:
        state = run_demo(cfg, castings=castings, rate_per_s=rate, chunk_size=chunk_size, bad_share=bad_share,
                         timeout_s=timeout_s, log_dir=Path("runs"), linger_s=linger_s)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(0 if len(state.predictions) == castings else 1)


@cli.command()
@_config_option
@click.option("--host", default=None,
              help="Address to bind (default: dashboard.host, 127.0.0.1). 0.0.0.0 serves every interface.")
@click.option("--port", type=int, default=None, help="Port (default: dashboard.port, 8050; 0 picks a free one).")
@click.option("--max-castings", type=int, default=None,
              help="Castings kept in memory (default: dashboard.max_castings).")
def dashboard(config_path: Path | None, host: str | None, port: int | None, max_castings: int | None) -> None:
    """Serve the control-room page: live castings, verdicts, traces with attention, rates (read-only).
    Optional token: STREAM_APP__DASHBOARD__TOKEN (then send `Authorization: Bearer ...` or open `/?token=...`)."""
    import asyncio

    from stream_app.config import load_config
    from stream_app.runtime.connections import check_connections
    from stream_app.runtime.dashboard_server import run_dashboard

    overrides = {k: v for k, v in (("host", host), ("port", port), ("max_castings", max_castings)) if v is not None}
    cfg = load_config(config_path, **({"dashboard": overrides} if overrides else {}))
    check_connections(cfg, redis=False)  # refused credentials or TLS settings: one clear error, exit 2
    asyncio.run(run_dashboard(cfg, on_started=lambda url: click.echo(f"dashboard: {url}", err=True)))


def _register_optional_commands() -> None:
    """Commands that live in their own modules (each imports its heavy dependencies lazily)."""
    try:
        from stream_app.cli_model import evaluate, train
    except ModuleNotFoundError as exc:  # pragma: no cover - only while the module is being written
        if exc.name != "stream_app.cli_model":
            raise
    else:
        cli.add_command(train)
        cli.add_command(evaluate)
    from stream_app.cli_dataset import dataset

    cli.add_command(dataset)


_register_optional_commands()


def main() -> None:
    try:
        cli.main(standalone_mode=True)
    except StreamAppError as exc:
        log.error("%s", exc)
        sys.exit(2)


if __name__ == "__main__":
    main()
