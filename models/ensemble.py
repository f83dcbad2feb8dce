"""Several LSTMs of one configuration scored as one model: their probabilities and attention averaged.

The recipe (models/recipe.py) trains one member per cross-validation fold and candidate; averaging them
removes much of the seed-to-seed variance that a single model trained on a few dozen castings shows. The ensemble
answers the scoring API of `SteelDefectLSTM` (``forward_with_attention``, ``forward``,
``predict_proba``, ``get_attention_weights``, ``input_size``, ``num_classes``), so the worker, replay and
``evaluate`` score it unchanged; a checkpoint records every member's config (models/checkpoint.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from models.config import LSTMConfig
from models.lstm_model import SteelDefectLSTM

__all__ = ["AveragedLSTMs"]


class AveragedLSTMs(nn.Module):
    """LSTMs on the same channels and classes (their configs may differ otherwise). Logits are those of
    the mean probability (sigmoid, or softmax over classes), so ``sigmoid``/``softmax`` of the result gives
    the members' mean probability; the attention is the members' mean (still 0 on padding, each row
    summing to 1 over its valid steps)."""

    def __init__(self, members: Sequence[SteelDefectLSTM | LSTMConfig | dict[str, Any]]) -> None:
        super().__init__()
        built = [m if isinstance(m, SteelDefectLSTM) else SteelDefectLSTM(m) for m in members]
        if len(built) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(built)}")
        shapes = {(m.input_size, m.num_classes) for m in built}
        if len(shapes) > 1:
            raise ValueError(f"the members disagree on (channels, classes): {sorted(shapes)}")
        self.members = nn.ModuleList(built)
        self.cfg = built[0].cfg  # the first member's config stands for the model (channels, classes)
        self.config = built[0].config
        self.input_size = built[0].input_size
        self.num_classes = built[0].num_classes
        self._last_attention: torch.Tensor | None = None

    def member_configs(self) -> list[dict[str, Any]]:
        return [m.config for m in self.members]

    @property
    def member_count(self) -> int:
        return len(self.members)

    def forward_with_attention(self, sequences: Any, sequence_lengths: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = [m.forward_with_attention(sequences, sequence_lengths) for m in self.members]
        attention = torch.stack([a for _, a in outputs]).mean(dim=0)
        logits = torch.stack([lg for lg, _ in outputs])  # (M, B) or (M, B, K)
        if self.num_classes == 1:
            p = torch.sigmoid(logits).mean(dim=0)
            return torch.log(p) - torch.log1p(-p), attention  # logit(p): sigmoid gives p back
        return torch.log(torch.softmax(logits, dim=-1).mean(dim=0)), attention  # softmax gives the mean back

    # the original API on top of forward_with_attention, the very methods of a single model: they read only
    # forward_with_attention, num_classes and _last_attention
    forward = SteelDefectLSTM.forward
    predict_proba = SteelDefectLSTM.predict_proba
    get_attention_weights = SteelDefectLSTM.get_attention_weights

    def get_normalization(self) -> dict[str, list[float]]:
        """The first member's input statistics (the recipe fits every member's on the same data)."""
        return self.members[0].get_normalization()

    def set_normalization(self, stats: dict[str, Sequence[float]]) -> None:
        for member in self.members:
            member.set_normalization(stats)

    def count_parameters(self, trainable_only: bool = False) -> int:
        return sum(m.count_parameters(trainable_only) for m in self.members)
