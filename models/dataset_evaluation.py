"""Scoring a checkpoint on a dataset file, with the summary-statistics baseline beside it.

Binary: AUC-ROC, AUC-PR, Brier score, F1/precision/recall at the checkpoint's threshold and a reliability
(calibration) plot. Multi-class: accuracy, macro F1 and a confusion matrix. Always the same numbers for
the summary-statistics logistic baseline stored in the checkpoint, and, given a candidate checkpoint, the
candidate's numbers side by side with the current one's on the same castings.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import brier_score_loss, confusion_matrix

from models.baseline import SummaryStatsLogistic
from models.checkpoint import checkpoint_channels, load_checkpoint
from models.dataset import CastingSequenceDataset
from models.dataset_file import BINARY_CLASS_NAMES, DatasetError, LabelledDataset, read_dataset
from models.lstm_model import SteelDefectLSTM
from models.metrics import binary_metrics, multiclass_metrics
from models.train import predict_dataset

__all__ = ["check_channels", "evaluate_dataset_file", "format_result", "score_model"]


def check_channels(info: dict[str, Any], channels: Sequence[dict[str, Any]], what: str = "the checkpoint") -> None:
    """Raise ``ValueError`` listing both sets unless ``channels`` (config order) are the checkpoint's, units too."""
    trained = checkpoint_channels(info)
    names_ok = [c["name"] for c in trained] == [c["name"] for c in channels]
    units_ok = all(t["unit"] is None or t["unit"] == c.get("unit") for t, c in zip(trained, channels, strict=False))
    if not (names_ok and units_ok):

        def show(rows: Sequence[dict[str, Any]]) -> str:
            return ", ".join(f"{r['name']} [{r.get('unit') or '?'}]" for r in rows)

        raise ValueError(
            f"{what} was trained on channels ({len(trained)}) {show(trained)}; the stream config names "
            f"({len(channels)}) {show(channels)}. Names, order and units must match"
        )


def _class_metrics(labels: np.ndarray, probs: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = multiclass_metrics(labels, probs)
    out["confusion_matrix"] = confusion_matrix(labels, probs.argmax(axis=1), labels=range(len(class_names))).tolist()
    return out


def _binary(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict[str, Any]:
    out: dict[str, Any] = binary_metrics(labels, probs, threshold)
    out["brier"] = float(brier_score_loss(labels, probs))
    return out


def score_model(
    model: SteelDefectLSTM,
    info: dict[str, Any],
    data: LabelledDataset,
    labels: np.ndarray,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metrics of the model and of its stored baseline on ``data`` (``labels`` in the checkpoint's classes)."""
    meta = info.get("metadata", {})
    class_names = _class_names(info)
    binary = class_names == BINARY_CLASS_NAMES and model.num_classes == 1
    probs = {"LSTM": predict_dataset(model, CastingSequenceDataset(data.sequences, labels))}
    if "baseline" in meta:
        baseline = SummaryStatsLogistic(meta["baseline"])
        probs["summary-stats baseline"] = baseline.predict_proba(data.sequences, 1 if binary else len(class_names))
    result: dict[str, Any] = {"version": info["version"], "n": len(labels)}
    for name, p in probs.items():
        key = "lstm" if name == "LSTM" else "baseline"
        if binary:
            result[key] = _binary(labels, p, float(meta.get("threshold", 0.5)) if key == "lstm" else 0.5)
        else:
            result[key] = _class_metrics(labels, p, class_names)
    if "baseline" in result:
        result["baseline"]["model"] = meta["baseline"].get("model", "summary statistics")
    return result, probs


def _class_names(info: dict[str, Any]) -> list[str]:
    """The checkpoint's classes; one that records none is a binary defect model (older checkpoints)."""
    names = info.get("metadata", {}).get("class_names")
    if names is None:
        num_classes = int(info["config"]["classifier"]["num_classes"])
        return list(BINARY_CLASS_NAMES) if num_classes == 1 else [str(k) for k in range(num_classes)]
    return list(names)


def _labels_in(data: LabelledDataset, class_names: list[str], source: str) -> np.ndarray:
    """Re-index the file's labels to the checkpoint's class list; a label it never saw is an error."""
    index = {name: k for k, name in enumerate(class_names)}
    unknown = sorted(set(data.class_names) - set(index))
    if unknown:
        first = next(i for i, y in enumerate(data.labels) if data.class_names[y] in unknown)
        raise DatasetError(
            f"{source}: label {data.class_names[data.labels[first]]!r} (casting {data.ids[first]!r}) is not one of "
            f"the checkpoint's classes {class_names}"
        )
    return np.array([index[data.class_names[y]] for y in data.labels], dtype=np.int64)


def evaluate_dataset_file(
    checkpoint: str | Path,
    readings: str | Path,
    labels: str | Path,
    channels: Sequence[dict[str, Any]],
    *,
    min_steps: int,
    max_steps: int,
    candidate: str | Path | None = None,
    output: str | Path | None = None,
    plot: str | Path | None = None,
) -> dict[str, Any]:
    """Score ``checkpoint`` (and ``candidate``) on a dataset file; write JSON to ``output``, PNG to ``plot``."""
    model, info = load_checkpoint(checkpoint)
    check_channels(info, channels, f"checkpoint {checkpoint}")
    loaded = [(Path(checkpoint), model, info)]
    if candidate is not None:
        cand_model, cand_info = load_checkpoint(candidate)
        check_channels(cand_info, channels, f"candidate {candidate}")
        if _class_names(cand_info) != _class_names(info):
            raise ValueError(
                f"candidate {candidate} predicts classes {_class_names(cand_info)}, "
                f"the current checkpoint {_class_names(info)}: not comparable"
            )
        loaded.append((Path(candidate), cand_model, cand_info))
    names = [c["name"] for c in channels]
    data = read_dataset(readings, labels, names, min_steps=min_steps, max_steps=max_steps)
    class_names = _class_names(info)
    y = _labels_in(data, class_names, str(labels))
    result: dict[str, Any] = {
        "data": data.summary,
        "class_names": class_names,
        "task": "binary" if class_names == BINARY_CLASS_NAMES else "multi-class",
    }
    all_probs: dict[str, dict[str, np.ndarray]] = {}
    for role, (path, m, inf) in zip(("current", "candidate"), loaded, strict=False):
        scored, probs = score_model(m, inf, data, y)
        scored["checkpoint"] = str(path)
        result[role] = scored
        all_probs[role] = probs
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if plot is not None:
        from models.plots import plot_evaluation

        plot_evaluation(result, y, all_probs, plot)
    return result


def _row(name: str, m: dict[str, Any], binary: bool) -> str:
    if binary:
        return (f"{name:<28} AUC-ROC {m['auc_roc']:.4f}  AUC-PR {m['auc_pr']:.4f}  Brier {m['brier']:.4f}  "
                f"F1 {m['f1']:.4f}  (threshold {m['threshold']:.3f})")  # fmt: skip
    return f"{name:<28} accuracy {m['accuracy']:.4f}  macro F1 {m['macro_f1']:.4f}"


def format_result(result: dict[str, Any]) -> str:
    """The side-by-side text `stream-app evaluate` prints."""
    binary = result["task"] == "binary"
    counts = result["data"].get("class_counts", {})
    lines = [f"{result['task']} evaluation on {result['current']['n']} castings, classes {counts}"]
    for role in ("current", "candidate"):
        if role not in result:
            continue
        r = result[role]
        label = f"{role} {r['version']}" if "candidate" in result else f"LSTM {r['version']}"
        lines.append(_row(label, r["lstm"], binary))
        if "baseline" in r:
            lines.append(_row(f"  {role} baseline" if "candidate" in result else "summary-stats baseline",
                              r["baseline"], binary))  # fmt: skip
    if "candidate" in result:
        key = "auc_roc" if binary else "accuracy"
        delta = result["candidate"]["lstm"][key] - result["current"]["lstm"][key]
        lines.append(f"candidate - current {key}: {delta:+.4f}")
    if not binary:
        lines.append(f"confusion matrix (rows true, columns predicted; {', '.join(result['class_names'])}):")
        lines.extend("  " + " ".join(f"{v:4d}" for v in row) for row in result["current"]["lstm"]["confusion_matrix"])
    return "\n".join(lines)
