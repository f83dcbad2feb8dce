"""Checkpoints: one dict with weights, model config, normalisation, version and training metadata.

Loaded with ``torch.load(..., weights_only=True)``, so everything besides tensors is plain Python
(str, int, float, bool, list, dict). ``version`` is ``"<format>-<sha256 of the weights, 12 hex>"``:
the same weights always give the same version, which the service reports as ``model_version``.
A checkpoint of several averaged members (models/ensemble.py) also holds ``members``, the list of their
configs (``config`` is the first's); one without the key is a single `SteelDefectLSTM`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.ensemble import AveragedLSTMs
from models.lstm_model import SteelDefectLSTM

__all__ = [
    "CHECKPOINT_FORMAT",
    "DEFAULT_CHECKPOINT",
    "checkpoint_channels",
    "load_checkpoint",
    "save_checkpoint",
    "weights_version",
]

CHECKPOINT_FORMAT = 1
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "default" / "model.pt"


def _plain(value: Any) -> Any:
    """Convert numpy scalars/arrays and tuples to plain Python so ``weights_only`` loading accepts them."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)  # e.g. torch.__version__ is a str subclass that weights_only refuses
    if isinstance(value, int | float):
        return type(value).__mro__[-2](value) if type(value) not in (int, float) else value
    raise TypeError(f"checkpoint metadata holds a {type(value).__name__}; use plain types")


def weights_version(state_dict: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(tensor.numpy().tobytes())
    return f"v{CHECKPOINT_FORMAT}-{digest.hexdigest()[:12]}"


def save_checkpoint(
    path: str | Path,
    model: SteelDefectLSTM | AveragedLSTMs,
    *,
    normalization: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``model`` to ``path``; returns the saved dict (without weights) for logging.

    ``normalization`` (``{"mean": [...], "std": [...]}``) defaults to the model's own statistics; if
    given it is also set on the model so the two never disagree.
    """
    if normalization is not None:
        model.set_normalization(normalization)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": weights_version(state),
        "config": _plain(model.config),
        "normalization": _plain(model.get_normalization()),
        "metadata": _plain(metadata or {}),
        "state_dict": state,
    }
    if isinstance(model, AveragedLSTMs):
        payload["members"] = _plain(model.member_configs())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return {k: v for k, v in payload.items() if k != "state_dict"}


def load_checkpoint(
    path: str | Path = DEFAULT_CHECKPOINT, map_location: str | torch.device = "cpu"
) -> tuple[SteelDefectLSTM | AveragedLSTMs, dict[str, Any]]:
    """Rebuild the model from its saved config and weights; returns (model in eval mode, info dict).

    ``info`` holds ``version``, ``config``, ``normalization``, ``metadata`` and ``format`` (and ``members``
    for an ensemble).
    """
    payload = torch.load(Path(path), map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise ValueError(f"{path} is not a checkpoint written by models.checkpoint")
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: unsupported checkpoint format {payload.get('format')!r}")
    members = payload.get("members")
    model = AveragedLSTMs(members) if members else SteelDefectLSTM(payload["config"])
    model.load_state_dict(payload["state_dict"])
    model.set_normalization(payload["normalization"])
    model.to(map_location).eval()
    info = {k: v for k, v in payload.items() if k != "state_dict"}
    return model, info


def describe_checkpoint(path: str | Path) -> str:
    _, info = load_checkpoint(path)
    return json.dumps({k: info[k] for k in ("version", "metadata")}, indent=2)


def checkpoint_channels(info: dict[str, Any]) -> list[dict[str, str | None]]:
    """The channels a checkpoint was trained on, in input order: ``[{"name": ..., "unit": ... or None}, ...]``.

    ``info`` is the dict `load_checkpoint` returns (or a checkpoint's ``metadata``). Accepts the current form
    (a list of ``{"name", "unit"}`` dicts) and the old one (a list of names; unit None). A checkpoint that
    records no channels raises ``ValueError``.
    """
    metadata = info.get("metadata", info)
    raw = metadata.get("channels") if isinstance(metadata, dict) else None
    if not isinstance(raw, list) or not raw:
        raise ValueError("the checkpoint records no channel set (metadata['channels'])")
    out: list[dict[str, str | None]] = []
    for item in raw:
        if isinstance(item, str):
            out.append({"name": item, "unit": None})
        elif isinstance(item, dict) and isinstance(item.get("name"), str):
            unit = item.get("unit")
            out.append({"name": item["name"], "unit": None if unit is None else str(unit)})
        else:
            raise ValueError(f"unreadable channel entry in the checkpoint's metadata: {item!r}")
    return out


def rewrite_metadata(path: str | Path, updates: dict[str, Any]) -> dict[str, Any]:
    """Merge ``updates`` into a checkpoint's metadata in place; weights, and hence ``version``, stay the same."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise ValueError(f"{path} is not a checkpoint written by models.checkpoint")
    payload["metadata"] = {**payload.get("metadata", {}), **_plain(updates)}
    if weights_version(payload["state_dict"]) != payload["version"]:
        raise ValueError(f"{path}: weights do not match the recorded version; not rewriting")
    tmp = Path(path).with_suffix(Path(path).suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return payload["metadata"]
