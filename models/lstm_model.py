"""LSTM with masked additive attention for casting-defect prediction (and general sequence classification).

Data flow of ``SteelDefectLSTM.forward_with_attention`` (``forward`` returns its logits)::

    x (B, T, C) --z-score--> LSTM (packed by length) --> H (B, T, D)
      --additive attention, masked to valid steps--> a (B, T), pooled = sum_t a_t H_t (B, D)
      --batch/layer norm (optional)--> MLP head --> logits (B,) or (B, K)

``forward_with_attention(x, lengths) -> (logits, attention)`` keeps no state between calls, so one model in
eval mode can serve several threads at once (the streaming service's ``Scorer`` uses only this call).
``forward`` + ``get_attention_weights()`` is the original design's API: ``forward`` records the last
attention on the model for ``get_attention_weights``, which nothing in the service reads.

References: Bahdanau et al. 2015 (additive attention), Raffel & Ellis 2015 (feed-forward attention
pooling for sequence classification). The layout follows nanoGPT's ``model.py``: small modules that
take the config, no I/O or logging here.

Public names kept from the original design (docs/ORIGINAL_DESIGN.md, whose code blocks run as written in
tests/test_original_design.py): ``SteelDefectLSTM``, ``create_default_lstm_config``, ``LSTMModelVariants``,
``CastingSequenceDataset``, ``LSTMPerformanceTracker``; docs/MODEL.md maps each original name to its behaviour.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from models.config import LSTMConfig, validate_lstm_config
from models.dataset import CastingSequenceDataset
from models.tracking import LSTMPerformanceTracker

__all__ = [
    "CastingSequenceDataset",
    "LSTMModelVariants",
    "LSTMPerformanceTracker",
    "SteelDefectLSTM",
    "create_default_lstm_config",
]

_ACTIVATIONS = {
    "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "sigmoid": nn.Sigmoid,
}  # fmt: skip
LAYER_NAMES = ("input_norm", "lstm", "attention", "pooled", "norm", "classifier")
FREEZABLE = ("conv", "lstm", "attention", "norm", "classifier")


def create_default_lstm_config() -> dict[str, Any]:
    """The original design's configuration schema values, as a plain nested dict (a fresh copy).

    Hidden 64, 2 layers, bidirectional, lr 0.001, 100 epochs, sequence length 300, ... The product's
    tuned configuration (the shipped checkpoint's) is ``configs/lstm.yaml``: ``load_lstm_config(PRODUCT_CONFIG)``.
    """
    return LSTMConfig().to_dict()


class LSTMModelVariants:
    """Pre-configured variants; each returns a full config dict (a fresh copy)."""

    @staticmethod
    def _with(**sections: dict[str, Any]) -> dict[str, Any]:
        config = create_default_lstm_config()
        for section, values in sections.items():
            config[section].update(values)
        return validate_lstm_config(config).to_dict()

    @staticmethod
    def standard_lstm() -> dict[str, Any]:
        """Unidirectional, 2 layers, hidden 64."""
        return LSTMModelVariants._with(architecture={"hidden_size": 64, "num_layers": 2, "bidirectional": False})

    @staticmethod
    def bidirectional_lstm() -> dict[str, Any]:
        """Bidirectional, 2 layers, hidden 64 (the original design's default)."""
        return LSTMModelVariants._with(architecture={"hidden_size": 64, "num_layers": 2, "bidirectional": True})

    @staticmethod
    def deep_lstm() -> dict[str, Any]:
        """Bidirectional, 4 layers, hidden 128."""
        return LSTMModelVariants._with(
            architecture={"hidden_size": 128, "num_layers": 4, "bidirectional": True, "attention_dim": 64},
            classifier={"hidden_dims": [64, 32]},
        )

    @staticmethod
    def lightweight_lstm() -> dict[str, Any]:
        """Unidirectional, 1 layer, hidden 32, small head: fastest inference."""
        return LSTMModelVariants._with(
            architecture={"hidden_size": 32, "num_layers": 1, "bidirectional": False, "attention_dim": 16},
            classifier={"hidden_dims": [16]},
        )

    @staticmethod
    def all() -> dict[str, dict[str, Any]]:
        return {
            "standard": LSTMModelVariants.standard_lstm(),
            "bidirectional": LSTMModelVariants.bidirectional_lstm(),
            "deep": LSTMModelVariants.deep_lstm(),
            "lightweight": LSTMModelVariants.lightweight_lstm(),
        }


class MaskedAdditiveAttention(nn.Module):
    """score_t = v . tanh(W h_t + b); softmax over valid steps only (exactly 0 on padding)."""

    def __init__(self, input_dim: int, attention_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(input_dim, attention_dim)
        self.score = nn.Linear(attention_dim, 1, bias=False)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.score(torch.tanh(self.proj(h))).squeeze(-1)  # (B, T)
        scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1)  # (B, T), exp(-inf) = 0 on padding
        pooled = torch.bmm(weights.unsqueeze(1), h).squeeze(1)  # (B, D)
        return pooled, weights


class SteelDefectLSTM(nn.Module):
    """LSTM + masked attention pooling + MLP head.

    ``forward(sequences, sequence_lengths=None)`` takes ``(B, T, C)`` float tensor or numpy array and
    returns logits: shape ``(B,)`` when ``classifier.num_classes == 1`` (sigmoid gives the defect
    probability), else ``(B, K)`` (softmax gives class probabilities). Steps at or beyond a sequence's
    length are padding and never change its result. ``forward_with_attention`` takes the same arguments
    and returns ``(logits, attention)`` without touching the model's state; ``forward`` also records the
    attention for ``get_attention_weights()`` (the original design's API, not re-entrant).

    A tensor input runs under the caller's autograd mode (training passes tensors). An array input (numpy,
    list) cannot carry gradients: its caller is outside autograd, so the forward builds no graph and the
    logits come back without ``requires_grad`` (``.numpy()`` works, as the original design's usage expects).
    """

    def __init__(self, config: LSTMConfig | dict[str, Any] | None = None) -> None:
        super().__init__()
        cfg = validate_lstm_config(config)
        self.cfg = cfg
        self.config = cfg.to_dict()
        arch, head, norm = cfg.architecture, cfg.classifier, cfg.normalization
        # settings as attributes, as the original design's users read them (the config is the source of truth)
        self.input_size = arch.input_size
        self.hidden_size = arch.hidden_size
        self.num_layers = arch.num_layers
        self.bidirectional = arch.bidirectional
        self.dropout = arch.dropout
        self.num_classes = head.num_classes
        self.use_batch_norm = norm.batch_norm
        self.use_layer_norm = norm.layer_norm and not norm.batch_norm  # batch norm wins when both are set
        self.use_input_norm = norm.input_norm and cfg.data_processing.normalization == "z_score"
        self.register_buffer("input_mean", torch.zeros(arch.input_size))
        self.register_buffer("input_std", torch.ones(arch.input_size))

        # optional local feature extractor; padding is zeroed first so it never leaks into valid steps
        self.conv: nn.Module | None = None
        lstm_input = arch.input_size
        if arch.conv_channels > 0:
            blocks: list[nn.Module] = []
            for i in range(arch.conv_layers):  # conv.0/conv.1 = the first block, as in one-layer checkpoints
                width_in = arch.input_size if i == 0 else arch.conv_channels
                blocks += [nn.Conv1d(width_in, arch.conv_channels, arch.conv_kernel, padding=arch.conv_kernel // 2),
                           nn.ReLU()]  # fmt: skip
            self.conv = nn.Sequential(*blocks)
            lstm_input = arch.conv_channels
        self.lstm = nn.LSTM(
            input_size=lstm_input,
            hidden_size=arch.hidden_size,
            num_layers=arch.num_layers,
            batch_first=True,
            bidirectional=arch.bidirectional,
            dropout=arch.dropout if arch.num_layers > 1 else 0.0,
        )
        d = arch.hidden_size * (2 if arch.bidirectional else 1)
        self.attention = MaskedAdditiveAttention(d, arch.attention_dim)
        if self.use_batch_norm:
            self.norm: nn.Module = nn.BatchNorm1d(d)
        elif self.use_layer_norm:
            self.norm = nn.LayerNorm(d)
        else:
            self.norm = nn.Identity()
        layers: list[nn.Module] = []
        width = d
        for hidden in head.hidden_dims:
            layers += [nn.Linear(width, hidden), _ACTIVATIONS[head.activation](), nn.Dropout(head.dropout)]
            width = hidden
        layers.append(nn.Linear(width, head.num_classes))
        self.classifier = nn.Sequential(*layers)
        self._last_attention: torch.Tensor | None = None

    # ---------------------------------------------------------------- normalisation
    @torch.no_grad()
    def fit_normalization(
        self, sequences: Sequence[np.ndarray] | np.ndarray, sequence_lengths: Iterable[int] | None = None
    ) -> dict[str, list[float]]:
        """Fit the z-score statistics on training data, over valid steps only (never padding)."""
        if isinstance(sequences, np.ndarray) and sequences.ndim == 3:
            lengths = [sequences.shape[1]] * len(sequences) if sequence_lengths is None else list(sequence_lengths)
            rows = [sequences[i, : int(n)] for i, n in enumerate(lengths)]
        else:
            rows = [np.asarray(s) for s in sequences]
        stacked = np.concatenate(rows, axis=0).astype(np.float64)
        mean, std = stacked.mean(axis=0), stacked.std(axis=0)
        std = np.where(std < 1e-8, 1.0, std)
        self.set_normalization({"mean": mean.tolist(), "std": std.tolist()})
        return self.get_normalization()

    @torch.no_grad()
    def set_normalization(self, stats: dict[str, Sequence[float]]) -> None:
        mean = torch.as_tensor(stats["mean"], dtype=torch.float32)
        std = torch.as_tensor(stats["std"], dtype=torch.float32)
        if mean.shape != (self.input_size,) or std.shape != (self.input_size,):
            raise ValueError(f"normalisation stats must have {self.input_size} values per key")
        if bool((std <= 0).any()):
            raise ValueError("normalisation std must be positive")
        self.input_mean.copy_(mean)
        self.input_std.copy_(std)

    def get_normalization(self) -> dict[str, list[float]]:
        return {"mean": self.input_mean.tolist(), "std": self.input_std.tolist()}

    # ---------------------------------------------------------------- forward
    def _prepare(
        self, sequences: torch.Tensor | np.ndarray, sequence_lengths: Any
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        device = self.input_mean.device
        x = torch.as_tensor(sequences, dtype=self.input_mean.dtype, device=device)
        if x.ndim != 3:
            raise ValueError(f"sequences must be (batch, steps, channels), got shape {tuple(x.shape)}")
        if x.shape[2] != self.input_size:
            raise ValueError(f"expected {self.input_size} channels, got {x.shape[2]}")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"empty batch or sequence: shape {tuple(x.shape)}")
        if sequence_lengths is None:
            return x, None
        lengths = torch.as_tensor(_expand_ellipsis(sequence_lengths, x.shape), dtype=torch.int64).flatten().cpu()
        if lengths.shape[0] != x.shape[0]:
            raise ValueError(f"{lengths.shape[0]} lengths for a batch of {x.shape[0]}")
        if bool((lengths < 1).any()) or bool((lengths > x.shape[1]).any()):
            raise ValueError(f"lengths must lie in [1, {x.shape[1]}], got {lengths.tolist()}")
        return x, lengths

    def _encode(self, x: torch.Tensor, lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised input (B, T, C) -> LSTM outputs H (B, T, D) and the valid-step mask (B, T)."""
        b, t, _ = x.shape
        if lengths is not None:
            mask = (torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)).to(x.device)  # (B, T)
        if self.conv is not None:
            if lengths is not None:
                x = x.masked_fill(~mask.unsqueeze(-1), 0.0)  # also clears NaN/inf in padding
            x = x.transpose(1, 2)  # (B, C, T)
            for layer in self.conv:
                x = layer(x)
                if lengths is not None and isinstance(layer, nn.ReLU):
                    x = x.masked_fill(~mask.unsqueeze(1), 0.0)  # padding stays zero between blocks
            x = x.transpose(1, 2)  # (B, T, conv_channels)
        if lengths is None:
            h, _ = self.lstm(x)  # (B, T, D)
            mask = torch.ones(b, t, dtype=torch.bool, device=x.device)
            return h, mask
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        h_packed, _ = self.lstm(packed)
        h, _ = pad_packed_sequence(h_packed, batch_first=True, total_length=t)  # (B, T, D), 0 on padding
        return h, mask

    def _run(self, sequences: Any, sequence_lengths: Any) -> dict[str, torch.Tensor]:
        """Every stage's output for one call; reads the parameters and buffers only, writes nothing."""
        x, lengths = self._prepare(sequences, sequence_lengths)
        b, t, _ = x.shape
        if self.use_input_norm:
            x = (x - self.input_mean) / self.input_std  # (B, T, C)
        h, mask = self._encode(x, lengths)  # (B, T, D), (B, T)
        pooled, weights = self.attention(h, mask)  # (B, D), (B, T)
        normed = self.norm(pooled)  # (B, D)
        logits = self.classifier(normed)  # (B, K)
        if self.num_classes == 1:
            logits = logits.squeeze(-1)  # (B,)
        assert weights.shape == (b, t), f"attention shape {tuple(weights.shape)}, expected {(b, t)}"
        expected = (b,) if self.num_classes == 1 else (b, self.num_classes)
        assert logits.shape == expected, f"logits shape {tuple(logits.shape)}, expected {expected}"
        return {
            "input_norm": x,
            "lstm": h,
            "attention": weights,
            "pooled": pooled,
            "norm": normed,
            "classifier": logits,
        }

    def forward_with_attention(
        self, sequences: torch.Tensor | np.ndarray, sequence_lengths: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and attention of one call, with no state kept on the model (safe from several threads).

        sequences: (B, T, C) tensor or array; sequence_lengths: (B,) valid steps per row, or None (all T).
        Returns logits (B,) when ``num_classes == 1`` else (B, K), and attention (B, T): exactly 0 on
        padding, each row sums to 1 over its valid steps. Autograd as ``forward``: a tensor input runs under
        the caller's mode, an array input builds no graph.
        """
        if isinstance(sequences, torch.Tensor):
            out = self._run(sequences, sequence_lengths)
        else:
            with torch.no_grad():  # an array carries no gradients; see the class docstring
                out = self._run(sequences, sequence_lengths)
        return out["classifier"], out["attention"]

    def forward(self, sequences: torch.Tensor | np.ndarray, sequence_lengths: Any = None) -> torch.Tensor:
        """Logits (B,) or (B, K); records the attention for ``get_attention_weights`` (the original API).

        That record is the one piece of state a call leaves: callers that share the model across threads
        use ``forward_with_attention`` instead.
        """
        logits, attention = self.forward_with_attention(sequences, sequence_lengths)
        self._last_attention = attention.detach()
        return logits

    def predict_proba(self, sequences: Any, sequence_lengths: Any = None) -> torch.Tensor:
        """Probabilities without gradients: (B,) defect probability, or (B, K) class probabilities."""
        with torch.no_grad():
            logits = self.forward(sequences, sequence_lengths)
        return torch.sigmoid(logits) if self.num_classes == 1 else torch.softmax(logits, dim=-1)

    # ---------------------------------------------------------------- introspection
    def get_attention_weights(self) -> torch.Tensor:
        """Attention of the last ``forward``: (B, T), 0 on padding, each row sums to 1 over valid steps.

        Kept for the original design's API (``outputs = model.forward(x)`` then ``get_attention_weights()``);
        with threads sharing the model, the "last" call is any thread's: use ``forward_with_attention``.
        """
        if self._last_attention is None:
            raise RuntimeError("no forward pass has run yet")
        return self._last_attention

    def get_layer_outputs(self, sequences: Any, layer_name: str = "lstm", sequence_lengths: Any = None) -> torch.Tensor:
        """Output of one stage (see ``LAYER_NAMES``) for ``sequences``, without gradients."""
        if layer_name not in LAYER_NAMES:
            raise ValueError(f"unknown layer {layer_name!r}; choose one of {LAYER_NAMES}")
        with torch.no_grad():
            return self._run(sequences, sequence_lengths)[layer_name]

    def freeze_layers(
        self,
        layer_names: Iterable[str] | None = None,
        *,
        freeze_lstm: bool | None = None,
        freeze_classifier: bool | None = None,
    ) -> list[str]:
        """Stop gradients for the named parts (see ``FREEZABLE``); returns the names frozen.

        Either a list (``freeze_layers(["lstm"])``; the caller's list is not mutated) or the original
        keyword form ``freeze_layers(freeze_lstm=True, freeze_classifier=False)``: ``freeze_lstm`` (default
        True) freezes the sequence encoder (the conv front-end if any, and the LSTM), ``freeze_classifier``
        (default False) the MLP head. False leaves a part as it is; ``unfreeze_layers`` thaws.
        """
        if layer_names is not None and (freeze_lstm is not None or freeze_classifier is not None):
            raise TypeError("give layer_names or freeze_lstm/freeze_classifier, not both")
        if isinstance(layer_names, str | bool):
            raise TypeError(f"layer_names must be a list of names, got {layer_names!r}")
        if layer_names is None:
            encoder = ["conv", "lstm"] if self.conv is not None else ["lstm"]
            names = encoder if freeze_lstm is None or freeze_lstm else []
            names = names + (["classifier"] if freeze_classifier else [])
        else:
            names = list(layer_names)
        unknown = [n for n in names if n not in FREEZABLE]
        if unknown:
            raise ValueError(f"unknown layer(s) {unknown}; choose from {FREEZABLE}")
        for name in names:
            module = getattr(self, name)
            for p in module.parameters() if module is not None else ():
                p.requires_grad_(False)
        return names

    def unfreeze_layers(self, layer_names: Iterable[str] = FREEZABLE) -> None:
        for name in list(layer_names):
            module = getattr(self, name)
            for p in module.parameters() if module is not None else ():
                p.requires_grad_(True)

    def count_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def model_size_mb(self) -> float:
        """Size of parameters and buffers in MiB (float32)."""
        total = sum(t.numel() * t.element_size() for t in [*self.parameters(), *self.buffers()])
        return total / 2**20

    def get_model_info(self) -> dict[str, Any]:
        """Parameter counts, size in MiB and settings, with the original design's keys, plus the full config."""
        cfg = self.cfg
        return {
            "total_parameters": self.count_parameters(),
            "trainable_parameters": self.count_parameters(trainable_only=True),
            "model_size_mb": self.model_size_mb(),
            "architecture": {
                "input_size": self.input_size,
                "hidden_size": self.hidden_size,
                "num_layers": self.num_layers,
                "bidirectional": self.bidirectional,
                "attention_dim": cfg.architecture.attention_dim,
                "classifier_dims": list(cfg.classifier.hidden_dims),
                "num_classes": self.num_classes,
            },
            "regularization": {
                "dropout": self.dropout,
                "classifier_dropout": cfg.classifier.dropout,
                "weight_decay": cfg.regularization.weight_decay,
                "gradient_clip": cfg.regularization.gradient_clip,
            },
            "normalization": {
                "batch_norm": self.use_batch_norm,
                "layer_norm": self.use_layer_norm,
                "input_norm": self.use_input_norm,
            },
            "config": cfg.to_dict(),
        }


def _expand_ellipsis(lengths: Any, shape: torch.Size) -> Any:
    """``[150, 200, ...]`` as the original design writes it: a trailing ``...`` stands for the remaining
    rows of the batch, which are full length (``shape[1]`` steps). Anything else is returned unchanged."""
    if not isinstance(lengths, list | tuple) or not any(v is Ellipsis for v in lengths):
        return lengths
    given = list(lengths[:-1])
    if lengths[-1] is not Ellipsis or any(v is Ellipsis for v in given):
        raise ValueError(f"... may only end sequence_lengths (the remaining rows at full length), got {lengths}")
    if len(given) > shape[0]:
        raise ValueError(f"{len(given)} lengths for a batch of {shape[0]}")
    return given + [shape[1]] * (shape[0] - len(given))
