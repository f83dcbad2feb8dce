"""The `stream-app` command line: parse arguments, configure logging, call one function, return a code."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from stream_app.errors import StreamAppError

log = logging.getLogger("stream_app")


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # client libraries log every connection at INFO; their warnings are what an operator needs
    for noisy in ("kafka", "aiokafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def cli(verbose: bool) -> None:
    """Streaming defect predictor for steel continuous-casting lines."""
    _configure_logging(verbose)


@cli.group()
@click.option(
    "--dir", "root", type=click.Path(path_type=Path), default=None,
    help="Data, logs and pid files (default: $DEVSTACK_DIR or .devstack/ in the repository).",
)
@click.pass_context
def devstack(ctx: click.Context, root: Path | None) -> None:
    """Local Kafka (KRaft) and Redis for development and tests. Ports: $DEVSTACK_KAFKA_PORT,
    $DEVSTACK_KAFKA_CONTROLLER_PORT, $DEVSTACK_REDIS_PORT."""
    from stream_app.devstack import DevstackSettings

    ctx.obj = DevstackSettings.from_env(root)


def _print_status(rows) -> bool:
    for row in rows:
        click.echo(row.line())
    return all(row.healthy for row in rows)


@devstack.command("up")
@click.pass_obj
def devstack_up(settings) -> None:
    """Start Kafka and Redis (idempotent) and wait until both answer."""
    from stream_app import devstack as ds

    healthy = _print_status(ds.up(settings))
    sys.exit(0 if healthy else 1)


@devstack.command("down")
@click.pass_obj
def devstack_down(settings) -> None:
    """Stop the processes that `up` started (and only those)."""
    from stream_app import devstack as ds

    rows = ds.down(settings)
    _print_status(rows)
    sys.exit(1 if any(row.running for row in rows) else 0)


@devstack.command("status")
@click.pass_obj
def devstack_status(settings) -> None:
    """Ask each service; exit 0 only if both are healthy."""
    from stream_app import devstack as ds

    sys.exit(0 if _print_status(ds.status(settings)) else 1)


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
    from stream_app.worker import run_worker

    cfg = load_config(config_path)
    level = logging.getLevelName(logging.getLogger().level).lower()
    run_worker(cfg, loglevel={"warning": "warn", "critical": "crit"}.get(level, level), datadir=datadir)


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


_register_optional_commands()


def main() -> None:
    try:
        cli.main(standalone_mode=True)
    except StreamAppError as exc:
        log.error("%s", exc)
        sys.exit(2)


if __name__ == "__main__":
    main()
