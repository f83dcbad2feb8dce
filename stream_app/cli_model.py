"""`stream-app train` and `stream-app evaluate`: thin commands over ``models`` (registered by cli.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import click

from stream_app.extras import require_extra
from stream_app.logging_setup import configure_logging

__all__ = ["evaluate", "train"]


def _stream_channels(stream_config: Path | None) -> tuple[list[dict[str, str]], int, int]:
    """The channel set (names + units, in order) and length limits of the stream config the worker reads."""
    from stream_app.config import load_config
    from stream_app.errors import ConfigError

    try:
        cfg = load_config(stream_config)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--stream-config") from None
    channels = [{"name": c.name, "unit": c.unit} for c in cfg.validation.channels]
    return channels, cfg.validation.min_steps, cfg.validation.max_steps


EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
_STREAM_CONFIG_HELP = (
    "Stream config YAML whose validation.channels (names, units, order) and min/max_steps define the "
    "dataset's channels, the same file the worker reads (default: configs/stream.yaml; STREAM_APP__* "
    "variables override it)."
)


def _source(data: Path | None, synthetic: int | None, data_seed: int):
    from models.dataset_io import DataSource

    if (data is None) == (synthetic is None):
        raise click.UsageError("give exactly one of --data PATH or --synthetic N")
    return DataSource(str(data) if data else None, synthetic, data_seed)


@click.command("train")
@click.option(
    "--config",
    "config_path",
    type=EXISTING_FILE,
    default=None,
    help="LSTM config YAML (default: the product's configs/lstm.yaml, the shipped checkpoint's "
    "config). Keys can be overridden as LSTM__SECTION__KEY=value environment variables.",
)
@click.option(
    "--data",
    type=EXISTING_FILE,
    default=None,
    help="Readings file (.parquet or .csv, long form; see README 'Your own data') with --labels, "
    "or a synthetic NPZ written by models.synthetic.save_dataset.",
)
@click.option(
    "--labels",
    type=EXISTING_FILE,
    default=None,
    help="Labels CSV casting_id,label (0/1 or class names) for a --data readings file.",
)
@click.option(
    "--stream-config",
    type=EXISTING_FILE,
    default=None,
    help=_STREAM_CONFIG_HELP,
)
@click.option("--synthetic", type=click.IntRange(min=20), default=None, help="Generate N synthetic castings.")
@click.option("--data-seed", type=int, default=0, show_default=True, help="Seed of the synthetic generator.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split and of training.")
@click.option(
    "--search-budget-s",
    type=click.FloatRange(min=0),
    default=900.0,
    show_default=True,
    help="With --labels: no new search candidate starts after this many seconds (the first always runs).",
)
@click.option(
    "--test-fraction",
    type=click.FloatRange(min=0, max=0.9),
    default=0.2,
    show_default=True,
    help="With --labels: share held out as a test split (0: none; score a separate file with evaluate).",
)
@click.option(
    "--folds",
    type=click.IntRange(min=1, max=10),
    default=4,
    show_default=True,
    help="With --labels: cross-validation folds over train + validation; the chosen candidate's fold models, "
    "averaged, are the model (1: one validation split instead).",
)
@click.option(
    "--refit/--no-refit",
    default=True,
    show_default=True,
    help="With --labels and --folds 1: retrain the chosen candidate on train + validation for its best epoch count.",
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Where model.pt, metrics.json, history.jsonl and the plots go.",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="Override training.num_epochs (with --labels: the search's epoch limit; default from the data size).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="torch CPU threads (one is as fast for this small LSTM and keeps runs reproducible).",
)
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option("-v", "--verbose", is_flag=True)
def train(
    config_path, data, labels, stream_config, synthetic, data_seed, seed, search_budget_s, test_fraction, folds,
    refit, output_dir, epochs, threads, progress, verbose,
) -> None:  # fmt: skip
    """Train the defect model; writes the checkpoint, metrics and plots to --output-dir.

    With --data READINGS --labels LABELS: any channel set (from --stream-config), binary or multi-class;
    the recipe picks the variant and learning rate by cross-validation (models/recipe.py).
    """
    configure_logging(verbose)
    require_extra("train", "train")
    if labels is not None or (data is not None and data.suffix.lower() in (".parquet", ".csv")):
        _train_on_file(data, labels, stream_config, config_path, synthetic, output_dir, seed=seed,
                       budget_s=search_budget_s, test_fraction=test_fraction, folds=folds, refit=refit,
                       max_epochs=epochs, threads=threads, progress=progress)  # fmt: skip
        return
    from models.config import PRODUCT_CONFIG, ConfigError, load_lstm_config
    from models.pipeline import SplitSpec, run_training

    source = _source(data, synthetic, data_seed)
    if config_path is None:
        # never the code's defaults: those are the original design's schema values, not the product's
        if not PRODUCT_CONFIG.is_file():
            raise click.UsageError(f"{PRODUCT_CONFIG} not found; give --config")
        config_path = PRODUCT_CONFIG
    try:
        config = load_lstm_config(config_path, env=os.environ)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--config") from None
    if epochs is not None:
        config.training.num_epochs = epochs
    channels = _stream_channels(stream_config)[0]
    try:
        metrics = run_training(
            config, source, output_dir, seed=seed, split=SplitSpec(seed=seed), progress=progress,
            num_threads=threads, channels=channels,
        )  # fmt: skip
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(_summary(metrics["test"]))
    click.echo(
        f"checkpoint {metrics['checkpoint']['path']} version {metrics['checkpoint']['version']}, "
        f"training {metrics['training']['train_seconds']} s"
    )


def _train_on_file(
    data, labels, stream_config, config_path, synthetic, output_dir, *, seed, budget_s, test_fraction, folds,
    refit, max_epochs, threads, progress,
) -> None:  # fmt: skip
    from models.dataset_file import DatasetError
    from models.dataset_training import train_on_dataset_file

    if data is None or labels is None:
        raise click.UsageError("a readings file needs both --data READINGS and --labels LABELS")
    if synthetic is not None or config_path is not None:
        raise click.UsageError("--data/--labels training chooses its own model config; drop --synthetic/--config")
    channels, min_steps, max_steps = _stream_channels(stream_config)
    click.echo(f"channels ({len(channels)}) from the stream config: "
               + ", ".join(f"{c['name']} [{c['unit']}]" for c in channels))  # fmt: skip
    try:
        train_on_dataset_file(
            data, labels, channels, output_dir, min_steps=min_steps, max_steps=max_steps, seed=seed,
            test_fraction=test_fraction, budget_s=budget_s, max_epochs=max_epochs, refit=refit, folds=folds,
            progress=progress, num_threads=threads, report=click.echo,
        )  # fmt: skip
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from None


@click.command("evaluate")
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("checkpoints/default/model.pt"),
    show_default=True,
)
@click.option(
    "--data",
    type=EXISTING_FILE,
    default=None,
    help="Score this dataset instead of the checkpoint's own test split: a readings file (.parquet/.csv) "
    "with --labels, or a synthetic NPZ.",
)
@click.option(
    "--labels",
    type=EXISTING_FILE,
    default=None,
    help="Labels CSV casting_id,label for a --data readings file.",
)
@click.option(
    "--candidate",
    type=EXISTING_FILE,
    default=None,
    help="A second checkpoint scored on the same --data/--labels, printed beside --checkpoint (the current one).",
)
@click.option(
    "--stream-config",
    type=EXISTING_FILE,
    default=None,
    help=_STREAM_CONFIG_HELP,
)
@click.option("--synthetic", type=click.IntRange(min=20), default=None, help="Score N fresh synthetic castings.")
@click.option("--data-seed", type=int, default=1, show_default=True, help="Generator seed for --synthetic.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write JSON here (with --labels default: evaluation.json).",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="PNG here: ROC/PR; with --labels reliability + ROC (binary) or confusion matrices (default: evaluation.png).",
)
@click.option(
    "--uea",
    type=click.Choice(["JapaneseVowels"]),
    default=None,
    help="Instead: train and test the same model code on a UEA dataset bundled with sktime.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Training seed for --uea.")
@click.option("--check-targets", is_flag=True, help="Exit with status 1 when a target is missed.")
@click.option("-v", "--verbose", is_flag=True)
def evaluate(
    checkpoint, data, labels, candidate, stream_config, synthetic, data_seed, output, plot, uea, seed, check_targets,
    verbose,
) -> None:  # fmt: skip
    """Evaluate a checkpoint: AUC-ROC, AUC-PR, F1/precision/recall, oracle AUC, summary-stats baseline.

    With --data READINGS --labels LABELS: binary AUC-ROC/AUC-PR/Brier + reliability plot, or multi-class
    accuracy + confusion matrix, the baseline beside it, and --candidate side by side with --checkpoint.
    """
    configure_logging(verbose)
    require_extra("train", "evaluate")
    if labels is not None or candidate is not None:
        _evaluate_file(checkpoint, data, labels, candidate, stream_config, output, plot)
        return
    if uea is not None:
        from models.uea import run_uea

        if importlib.util.find_spec("sktime") is None:
            raise click.ClickException(
                "--uea reads the dataset bundled with sktime, which is not installed: "
                "pip install 'casting-defect-stream[uea]' (or .venv/bin/pip install -e '.[uea]')"
            )
        result = run_uea(uea, seed=seed, output=output)
        click.echo(
            f"{uea}: test accuracy {result['test']['accuracy']:.4f} "
            f"(n={result['test']['n']}), target >= 0.95: {result['targets']['accuracy_ge_0.95']}"
        )
        sys.exit(1 if check_targets and not all(result["targets"].values()) else 0)

    from models.evaluate import run_evaluation

    if not checkpoint.is_file():
        raise click.BadParameter(f"{checkpoint} does not exist", param_hint="--checkpoint")

    source = None if data is None and synthetic is None else _source(data, synthetic, data_seed)
    result = run_evaluation(checkpoint, source, output=output, plot_path=plot)
    click.echo(_summary(result))
    if output is None:
        click.echo(json.dumps(result["targets"]))
    sys.exit(1 if check_targets and not all(result["targets"].values()) else 0)


def _evaluate_file(checkpoint, data, labels, candidate, stream_config, output, plot) -> None:
    from models.dataset_evaluation import evaluate_dataset_file, format_result
    from models.dataset_file import DatasetError

    if data is None or labels is None:
        raise click.UsageError("evaluating on a dataset file needs --data READINGS and --labels LABELS")
    if not checkpoint.is_file():
        raise click.BadParameter(f"{checkpoint} does not exist", param_hint="--checkpoint")
    channels, min_steps, max_steps = _stream_channels(stream_config)
    output = output or Path("evaluation.json")
    plot = plot or Path("evaluation.png")
    try:
        result = evaluate_dataset_file(
            checkpoint, data, labels, channels, min_steps=min_steps, max_steps=max_steps, candidate=candidate,
            output=output, plot=plot,
        )  # fmt: skip
    except (DatasetError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(format_result(result))
    click.echo(f"wrote {output} and {plot}")


def _summary(result: dict) -> str:
    lstm = result["lstm"]
    lines = [
        f"LSTM      AUC-ROC {lstm['auc_roc']:.4f}  AUC-PR {lstm['auc_pr']:.4f}  F1 {lstm['f1']:.4f}  "
        f"precision {lstm['precision']:.4f}  recall {lstm['recall']:.4f}  (threshold {lstm['threshold']:.3f}, "
        f"n={lstm['n']})"
    ]
    if "oracle" in result:
        lines.append(
            f"oracle    AUC-ROC {result['oracle']['auc_roc']:.4f}  AUC-PR {result['oracle']['auc_pr']:.4f}  "
            f"(LSTM/oracle {result['lstm_auc_over_oracle']:.4f})"
        )
    if "baseline" in result:
        b = result["baseline"]
        lines.append(
            f"baseline  AUC-ROC {b['auc_roc']:.4f}  AUC-PR {b['auc_pr']:.4f}  "
            f"(LSTM - baseline {result['lstm_minus_baseline_auc_roc']:+.4f})"
        )
    att = result.get("attention", {})
    if att.get("n"):
        lines.append(f"attention {att['mean_attention_in_span']:.1%} of the weight on the planted mechanism's span, "
                     f"which is {att['mean_span_share_of_steps']:.1%} of the steps (n={att['n']})")  # fmt: skip
    lines.append("targets   " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in result["targets"].items()))
    return "\n".join(lines)
