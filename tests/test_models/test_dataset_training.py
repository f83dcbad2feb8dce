"""`stream-app train --data --labels` and `evaluate` on tiny dataset files: binary and multi-class, any channels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from models.baseline import SummaryStatsLogistic, summary_features
from models.checkpoint import checkpoint_channels, load_checkpoint, rewrite_metadata
from models.dataset_file import write_labels, write_readings
from stream_app.cli_model import evaluate, train

CHANNELS = [("t1", "degC"), ("t2", "degC"), ("p1", "bar")]


def _stream_config(path: Path, channels=CHANNELS) -> Path:
    path.write_text(
        yaml.safe_dump({"validation": {"min_steps": 10, "max_steps": 40, "channels": [
            {"name": n, "unit": u, "min": -100.0, "max": 100.0} for n, u in channels]}}),
        encoding="utf-8",
    )  # fmt: skip
    return path


def _dataset(tmp_path: Path, classes: list[str], n: int = 48, seed: int = 0, tag: str = "d") -> tuple[Path, Path]:
    """Class k shifts channel k % C up by 2: easy to learn, so a few epochs suffice."""
    rng = np.random.default_rng(seed)
    castings, labels = [], []
    for i in range(n):
        k = i % len(classes)
        x = rng.standard_normal((int(rng.integers(10, 40)), len(CHANNELS))).astype(np.float32)
        x[:, k % len(CHANNELS)] += 2.0
        castings.append((f"{tag}-{i}", x))
        labels.append((f"{tag}-{i}", classes[k]))
    readings, label_file = tmp_path / f"{tag}.parquet", tmp_path / f"{tag}-labels.csv"
    write_readings(readings, castings, [c for c, _ in CHANNELS])
    write_labels(label_file, labels)
    return readings, label_file


def _train(runner: CliRunner, tmp_path: Path, readings: Path, labels: Path, out: Path, *extra: str):
    args = ["--data", str(readings), "--labels", str(labels), "--stream-config", str(tmp_path / "stream.yaml"),
            "--output-dir", str(out), "--epochs", "3", "--search-budget-s", "0", "--no-progress", *extra]  # fmt: skip
    return runner.invoke(train, args)


@pytest.fixture
def runner(tmp_path: Path) -> CliRunner:
    _stream_config(tmp_path / "stream.yaml")
    return CliRunner()


def test_binary_train_then_evaluate_with_candidate(runner: CliRunner, tmp_path: Path) -> None:
    readings, labels = _dataset(tmp_path, ["0", "1"])
    result = _train(runner, tmp_path, readings, labels, tmp_path / "a")
    assert result.exit_code == 0, result.output
    assert "48 castings found, 48 labelled" in result.output
    assert "skipped: budget spent" in result.output  # the budget bounds the search; the first candidate ran
    _, info = load_checkpoint(tmp_path / "a" / "model.pt")
    meta = info["metadata"]
    assert checkpoint_channels(info) == [{"name": n, "unit": u} for n, u in CHANNELS]
    assert meta["class_names"] == ["0", "1"] and 0.0 < meta["threshold"] < 1.0
    assert meta["data_summary"]["labelled"] == 48 and meta["search"]["chosen"]
    assert len(info["normalization"]["mean"]) == 3
    assert (tmp_path / "a" / "evaluation.png").stat().st_size > 0
    # cross-validation (the default): the fold models of the chosen candidate(s), averaged, are the model
    # (budget 0: only the first candidate ran, so its 4 fold models)
    assert len(info["members"]) == 4 and meta["search"]["folds"] == 4 and "4 fold models averaged" in result.output

    # one validation split, no refit: a single model
    result = _train(runner, tmp_path, readings, labels, tmp_path / "b", "--seed", "1", "--folds", "1", "--no-refit")
    assert result.exit_code == 0, result.output
    assert "members" not in load_checkpoint(tmp_path / "b" / "model.pt")[1]
    # the current checkpoint in the old form: channel names only, no class names (a binary model)
    rewrite_metadata(tmp_path / "a" / "model.pt", {"channels": [n for n, _ in CHANNELS], "class_names": None})
    test_readings, test_labels = _dataset(tmp_path, ["0", "1"], n=30, seed=5, tag="test")
    out = tmp_path / "eval.json"
    result = runner.invoke(evaluate, [
        "--checkpoint", str(tmp_path / "a" / "model.pt"), "--candidate", str(tmp_path / "b" / "model.pt"),
        "--data", str(test_readings), "--labels", str(test_labels), "--stream-config", str(tmp_path / "stream.yaml"),
        "--output", str(out), "--plot", str(tmp_path / "eval.png"),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    for role in ("current", "candidate"):
        for scorer in ("lstm", "baseline"):
            assert {"auc_roc", "auc_pr", "brier"} <= set(report[role][scorer])
    assert report["current"]["baseline"]["auc_roc"] > 0.9  # the shift is visible in the channel means
    assert "candidate - current auc_roc" in result.output and "Brier" in result.output
    assert (tmp_path / "eval.png").stat().st_size > 0


def test_multiclass_train_then_evaluate(runner: CliRunner, tmp_path: Path) -> None:
    readings, labels = _dataset(tmp_path, ["crack", "ok", "breakout"], n=45)
    result = _train(runner, tmp_path, readings, labels, tmp_path / "m", "--test-fraction", "0")
    assert result.exit_code == 0, result.output
    _, info = load_checkpoint(tmp_path / "m" / "model.pt")
    assert info["metadata"]["class_names"] == ["breakout", "crack", "ok"]
    assert info["config"]["classifier"]["num_classes"] == 3
    assert not (tmp_path / "m" / "evaluation.json").exists()  # no test split held out

    test_readings, test_labels = _dataset(tmp_path, ["crack", "ok", "breakout"], n=30, seed=3, tag="t")
    out = tmp_path / "eval.json"
    result = runner.invoke(evaluate, [
        "--checkpoint", str(tmp_path / "m" / "model.pt"), "--data", str(test_readings), "--labels", str(test_labels),
        "--stream-config", str(tmp_path / "stream.yaml"), "--output", str(out), "--plot", str(tmp_path / "cm.png"),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert np.asarray(report["current"]["lstm"]["confusion_matrix"]).sum() == 30
    assert report["current"]["baseline"]["accuracy"] > 0.8
    assert "confusion matrix" in result.output


def test_evaluate_refuses_other_channels(runner: CliRunner, tmp_path: Path) -> None:
    readings, labels = _dataset(tmp_path, ["0", "1"], n=24)
    assert _train(runner, tmp_path, readings, labels, tmp_path / "a", "--test-fraction", "0").exit_code == 0
    other = _stream_config(tmp_path / "other.yaml", [("t2", "degC"), ("t1", "degC"), ("p1", "bar")])
    result = runner.invoke(evaluate, [
        "--checkpoint", str(tmp_path / "a" / "model.pt"), "--data", str(readings), "--labels", str(labels),
        "--stream-config", str(other),
    ])  # fmt: skip
    assert result.exit_code == 1
    assert "t1 [degC], t2 [degC], p1 [bar]" in result.output and "t2 [degC], t1 [degC], p1 [bar]" in result.output


def test_bad_labels_file_is_a_clear_error_not_a_traceback(runner: CliRunner, tmp_path: Path) -> None:
    readings, _ = _dataset(tmp_path, ["0", "1"], n=8)
    bad = tmp_path / "bad.csv"
    bad.write_text("casting_id,label,shift\nd-0,1,A\n", encoding="utf-8")
    result = _train(runner, tmp_path, readings, bad, tmp_path / "x")
    assert result.exit_code == 1 and "unknown column(s) 'shift'" in result.output


def test_logistic_baseline_stored_parameters_match_sklearn() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    seqs = [rng.standard_normal((20, 2)) + (i % 3) for i in range(30)]
    y = np.arange(30) % 3
    stored = SummaryStatsLogistic().fit(seqs, y)
    x = StandardScaler().fit_transform(summary_features(seqs))
    want = LogisticRegression(max_iter=5000, random_state=0).fit(x, y).predict_proba(x)
    np.testing.assert_allclose(SummaryStatsLogistic(stored.to_dict()).predict_proba(seqs, 3), want, atol=1e-9)
