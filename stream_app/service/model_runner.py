"""Score a batch of casting windows: sort by length, pad, pack, one forward under inference_mode.

Pure torch, no I/O besides loading the checkpoint; the agents call `Scorer.score` in a worker thread.
`score` keeps no state between calls (the model's `forward_with_attention` returns logits and attention
together, and the model is in eval mode), so one Scorer may serve several threads at once.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from stream_app.config import ChannelLimits, ModelConfig
from stream_app.errors import CheckpointMismatchError, ModelLoadError

if TYPE_CHECKING:
    from models.lstm_model import SteelDefectLSTM

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Score:
    probability: float
    attention: np.ndarray  # (n_steps,) float32, sums to 1


def choose_device(preference: str) -> torch.device:
    if preference == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError("model.device is 'cuda' but no CUDA device is available")
        return torch.device("cuda")
    if preference == "auto" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def choose_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision == "auto":
        return torch.float64 if device.type == "cpu" else torch.float32
    return {"float32": torch.float32, "float64": torch.float64}[precision]


class Scorer:
    def __init__(
        self,
        model: SteelDefectLSTM,
        version: str,
        device: torch.device,
        dtype: torch.dtype = torch.float64,
        metadata: dict | None = None,
    ) -> None:
        if getattr(model, "num_classes", 1) != 1:
            raise CheckpointMismatchError(
                f"the checkpoint is a {model.num_classes}-class model; the service publishes one defect "
                "probability per casting, so it scores binary (num_classes=1) checkpoints only "
                "(evaluate multi-class models offline with `stream-app evaluate`)"
            )
        # float32 sums come out a bit different depending on which other castings share the batch;
        # in float64 those differences sit far below the 7 decimals a prediction carries.
        self.model = model.to(device=device, dtype=dtype).eval()
        self.version = version
        self.device = device
        self.dtype = dtype
        self.metadata = metadata or {}
        self.n_channels = int(model.input_size)

    def threshold(self, configured: str | float) -> float:
        """The decision threshold: the configured number, or the checkpoint's (0.5 if it has none)."""
        if configured == "checkpoint":
            return float(self.metadata.get("threshold", 0.5))
        return float(configured)

    @classmethod
    def from_checkpoint(cls, path: Path | str, device_preference: str = "auto", precision: str = "auto") -> Scorer:
        from models.checkpoint import load_checkpoint

        path = Path(path)
        if not path.exists():
            raise ModelLoadError(
                f"model checkpoint {path} not found; train one with `stream-app train` "
                "or point model.checkpoint (STREAM_APP__MODEL__CHECKPOINT) at one"
            )
        device = choose_device(device_preference)
        try:
            model, info = load_checkpoint(path, map_location=device)
        except (OSError, EOFError, RuntimeError, ValueError, KeyError, pickle.UnpicklingError) as exc:
            raise ModelLoadError(f"cannot load model checkpoint {path}: {exc}") from exc
        dtype = choose_dtype(precision, device)
        log.info("loaded model %s from %s on %s (%s)", info["version"], path, device, dtype)
        return cls(model, info["version"], device, dtype, info.get("metadata"))

    def score(self, windows: list[np.ndarray]) -> list[Score]:
        """One probability and one attention vector per window, in the order given."""
        if not windows:
            return []
        lengths = np.array([len(w) for w in windows])
        order = np.argsort(-lengths, kind="stable")  # longest first: packing needs no re-sort
        max_len = int(lengths[order[0]])
        batch = np.zeros((len(windows), max_len, self.n_channels), dtype=np.float32)  # (B, T, C), as stored
        for row, i in enumerate(order):
            batch[row, : lengths[i]] = windows[i]
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(device=self.device, dtype=self.dtype, non_blocking=True)
            # stateless: the attention comes back with the logits, never read off the model afterwards
            logits, attention_t = self.model.forward_with_attention(x, torch.from_numpy(lengths[order]))
            probabilities = torch.sigmoid(logits).float().cpu().numpy()  # (B,)
            attention = attention_t.float().cpu().numpy()  # (B, T)
        scores: list[Score | None] = [None] * len(windows)
        for row, i in enumerate(order):
            scores[i] = Score(float(probabilities[row]), attention[row, : lengths[i]].copy())
        return scores  # type: ignore[return-value]


def _describe(channels: Sequence[dict]) -> str:
    return "[" + ", ".join(f"{c['name']} ({c['unit']})" if c.get("unit") else str(c["name"]) for c in channels) + "]"


def check_fits(scorer: Scorer, channels: Sequence[ChannelLimits], path: Path | str = "the checkpoint") -> None:
    """Refuse a model that was not trained on the configured channel set: the same names, in the same
    order, with the same units where the checkpoint records them. The error lists both sets."""
    from models.checkpoint import checkpoint_channels

    configured = [{"name": c.name, "unit": c.unit} for c in channels]
    if scorer.metadata.get("channels"):
        try:
            recorded = checkpoint_channels({"metadata": scorer.metadata})
        except ValueError as exc:
            raise CheckpointMismatchError(f"{path}: {exc}") from None
    else:  # written before checkpoints recorded their channels
        recorded = []
    if not recorded:
        if scorer.n_channels != len(configured):
            raise CheckpointMismatchError(
                f"{path} takes {scorer.n_channels} channels; validation.channels names {len(configured)}: "
                f"{_describe(configured)}"
            )
        log.warning("%s records no channel names; only the channel count (%d) could be checked", path,
                    scorer.n_channels)
        return
    names_differ = [c["name"] for c in recorded] != [c["name"] for c in configured]
    units_differ = any(r.get("unit") not in (None, c["unit"]) for r, c in zip(recorded, configured, strict=False))
    if names_differ or units_differ or len(recorded) != scorer.n_channels:
        if names_differ and sorted(c["name"] for c in recorded) == sorted(c["name"] for c in configured):
            problem = "was trained on the same channels in another order"
        elif names_differ:
            problem = "was trained on other channels than the config names"
        elif units_differ:
            problem = "was trained on the same channels in other units"
        else:
            problem = f"records {len(recorded)} channels but its model takes {scorer.n_channels} inputs"
        raise CheckpointMismatchError(
            f"{path} {problem} (the window's columns must be the model's features, in order)\n"
            f"  checkpoint ({len(recorded)}, model input {scorer.n_channels}): {_describe(recorded)}\n"
            f"  validation.channels ({len(configured)}): {_describe(configured)}"
        )


def load_scorer(model_cfg: ModelConfig, channels: Sequence[ChannelLimits], path: Path | str | None = None) -> Scorer:
    """The checkpoint at `path` (default `model.checkpoint`), loaded and checked against the channel set."""
    path = Path(path if path is not None else model_cfg.checkpoint)
    scorer = Scorer.from_checkpoint(path, model_cfg.device, model_cfg.precision)
    check_fits(scorer, channels, path)
    # one forward now: torch starts its thread pool and kernels (a CUDA context on a GPU) lazily, which
    # would otherwise land on the first casting's latency, or mid-stream on a swapped-in model's
    scorer.score([np.zeros((16, scorer.n_channels), dtype=np.float32)])
    return scorer
