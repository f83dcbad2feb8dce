"""`stream-app dataset`: a labelled dataset file from a historical sensor topic (see runtime.dataset_builder)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import click

from stream_app.errors import ConfigError

SUFFIXES = (".parquet", ".csv")


@click.command()
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="YAML config (default: configs/stream.yaml); STREAM_APP__* variables override it. Its "
                   "validation.channels are the dataset's columns.")
@click.option("--labels", "labels_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="CSV `casting_id,label` (0/1, or class names) from the plant's quality records.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Readings file to write: .parquet or .csv (long form: casting_id, step, one column per channel).")
@click.option("--labels-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Labels of the written castings (default: <out name>.labels.csv beside --out).")
@click.option("--from", "start", default="earliest", show_default=True,
              help="'earliest' or an ISO-8601 time: castings whose readings start at/after it.")
@click.option("--until", default=None, help="ISO-8601 time to stop at (default: the end offsets seen at start).")
@click.option("--app-id", default=None,
              help="The builder's own id, hence Redis prefix (default: <app_id>-dataset-<time>).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def dataset(config_path, labels_path, out_path, labels_out, start, until, app_id, no_progress) -> None:
    """Build a labelled dataset file from the sensor topic's history, windows exactly as the worker scores them."""
    from stream_app.extras import require_extra

    require_extra("train", "dataset")  # the dataset file format (pyarrow) ships with the training extra
    from models.dataset_file import read_labels, write_labels, write_readings
    from stream_app.config import load_config
    from stream_app.runtime.connections import check_settings_once
    from stream_app.runtime.dataset_builder import collect_windows, labels_path_for
    from stream_app.runtime.replay import parse_time
    from stream_app.tools.progress import ReadProgress

    if out_path.suffix.lower() not in SUFFIXES:
        raise click.BadParameter(f"must end in {' or '.join(SUFFIXES)}", param_hint="--out")
    labels_out = labels_out or labels_path_for(out_path)
    for path, hint in ((out_path, "--out"), (labels_out, "--labels-out")):
        if not path.resolve().parent.is_dir():
            raise click.BadParameter(f"folder {path.parent} does not exist", param_hint=hint)
    if labels_out.resolve() == labels_path.resolve():
        raise click.BadParameter("must differ from --labels (it would be overwritten)", param_hint="--labels-out")
    for moment in (start if start != "earliest" else None, until):
        if moment is not None:
            parse_time(moment)  # a bad time is an error now, not after reading the topic
    base = load_config(config_path)
    app_id = app_id or f"{base.app_id}-dataset-{time.strftime('%Y%m%d%H%M%S')}"
    if app_id == base.app_id:
        raise ConfigError("--app-id must differ from the live worker's app_id (its Redis prefix)", keys=["app_id"])
    cfg = base.model_copy(update={"app_id": app_id})
    labels = read_labels(labels_path)  # a bad labels file fails before the topic is read
    check_settings_once(cfg)  # refused credentials or TLS settings: one error naming the setting
    channels = [c.name for c in cfg.validation.channels]

    if logging.getLogger().level > logging.DEBUG:  # each rejection is in the summary; one line each only with -v
        logging.getLogger("stream_app.service").setLevel(logging.ERROR)
    progress = ReadProgress("dataset", enabled=not no_progress)
    try:
        windows, summary = asyncio.run(collect_windows(cfg, labels, start=start, until=until, on_read=progress))
    finally:
        progress.close()
    ids = list(windows)
    if not ids:
        for line in summary.lines():
            click.echo(line)
        raise click.ClickException(f"no labelled casting in {cfg.topics.sensors} within the bounds; nothing written")
    summary.written = write_readings(out_path, ((casting_id, windows[casting_id]) for casting_id in ids), channels)
    write_labels(labels_out, [(casting_id, labels[casting_id]) for casting_id in ids])
    for line in summary.lines():
        click.echo(line)
    click.echo(f"wrote {summary.written} castings ({len(channels)} channels) to {out_path}, labels to {labels_out}")
