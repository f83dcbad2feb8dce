"""What the control-room page shows: the last N castings of the line, their traces and predictions, and rates.

Pure state, no I/O: the dashboard's feed hands it parsed sensor messages, prediction documents and dead
letters, passing the time in; the server reads rows, details and rates out of it.

Memory is bounded by `DashboardConfig.max_castings`: each kept casting holds its trace as float32
(max_steps x channels, allocated to the steps seen) and its attention as float32, so the bound is about
``max_castings * max_steps * (channels + 1) * 4`` bytes plus ~1 KiB of bookkeeping per casting
(500 castings of 500 steps and 5 channels: ~6 MiB). Rates keep at most `RATE_WINDOW_MAX` recent events.
"""

from __future__ import annotations

import math
import re
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stream_app.config import DashboardConfig, ValidationConfig
from stream_app.service.messages import EndMarker, Readings

RATE_WINDOW_S = 300.0  # latency percentiles and defect share over the last 5 minutes
RATE_WINDOW_MAX = 20_000  # most predictions remembered for rates (bounded even at thousands per minute)
TOP_STEPS = 5


class PredictionDoc(BaseModel):
    """The fields of a `casting.predictions` record the page needs (others are ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    casting_id: str = Field(min_length=1, max_length=256)
    defect_probability: float = Field(ge=0.0, le=1.0)
    predicted_defect: bool
    threshold: float
    n_steps: int = Field(ge=1)
    attention: list[float]
    model_version: str
    scored_at: str
    latency_ms: float = Field(ge=0.0)
    gaps_filled: int = 0


class BadPrediction(ValueError):
    """A prediction record the page cannot show (the worker did not write it, or it is corrupt)."""


def parse_prediction(raw: bytes | None) -> PredictionDoc:
    if raw is None:
        raise BadPrediction("empty value")
    try:
        doc = PredictionDoc.model_validate_json(raw)
    except ValidationError as exc:
        raise BadPrediction(str(exc.errors()[0].get("msg", exc))[:200]) from None
    if len(doc.attention) != doc.n_steps or not all(math.isfinite(a) for a in doc.attention):
        raise BadPrediction(f"attention has {len(doc.attention)} values for n_steps {doc.n_steps}")
    return doc


@dataclass
class CastingTrack:
    """One casting as the page knows it: readings seen so far, and its prediction once scored."""

    casting_id: str
    strand: str | None
    first_seen_s: float
    last_seen_s: float
    trace: np.ndarray | None = None  # (steps seen, channels) float32; NaN where a step has not arrived
    n_steps: int | None = None  # from the end marker or the prediction
    prediction: PredictionDoc | None = None
    attention: np.ndarray | None = None  # float32, one per step
    shown_seq: int = 0  # the view's sequence number when the prediction arrived (0: not scored yet)

    def add_rows(self, start: int, rows: np.ndarray, max_steps: int) -> None:
        end = min(start + len(rows), max_steps)
        if end <= start:
            return
        if self.trace is None or len(self.trace) < end:
            grown = np.full((end, rows.shape[1]), np.nan, dtype=np.float32)
            if self.trace is not None:
                grown[: len(self.trace)] = self.trace
            self.trace = grown
        self.trace[start:end] = rows[: end - start]

    def row(self) -> dict:
        """The table row (no traces)."""
        p = self.prediction
        return {
            "casting_id": self.casting_id,
            "strand": self.strand,
            "seq": self.shown_seq,
            "steps_seen": 0 if self.trace is None else int(np.isfinite(self.trace[:, 0]).sum()),
            "n_steps": self.n_steps,
            "defect_probability": p.defect_probability if p else None,
            "predicted_defect": p.predicted_defect if p else None,
            "threshold": p.threshold if p else None,
            "model_version": p.model_version if p else None,
            "latency_ms": p.latency_ms if p else None,
            "scored_at": p.scored_at if p else None,
        }

    def detail(self, channels: list[dict]) -> dict:
        """Row plus every channel's trace (null where a step is missing) and the attention with its top steps."""
        doc = self.row()
        n = self.n_steps or (0 if self.trace is None else len(self.trace))
        traces: list[list[float | None]] = []
        for c in range(len(channels)):
            column = np.full(n, np.nan, dtype=np.float32)
            if self.trace is not None:
                have = min(n, len(self.trace))
                column[:have] = self.trace[:have, c]
            traces.append([None if math.isnan(v) else round(float(v), 4) for v in column])
        attention = [] if self.attention is None else [float(a) for a in self.attention]
        top = [] if self.attention is None else [int(i) for i in np.argsort(-self.attention)[:TOP_STEPS]]
        doc.update(channels=channels, traces=traces, attention=attention, top_steps=top)
        return doc


@dataclass
class LineView:
    """The last `cfg.max_castings` castings (oldest first seen is dropped first) and the line's rates."""

    cfg: DashboardConfig
    validation: ValidationConfig
    castings: OrderedDict[str, CastingTrack] = field(default_factory=OrderedDict)
    recent: deque = field(default_factory=lambda: deque(maxlen=RATE_WINDOW_MAX))  # (t, defect, latency_ms)
    deadletters: Counter = field(default_factory=Counter)
    seq: int = 0
    model_version: str | None = None
    threshold: float | None = None
    lag: int | None = None
    started_s: float = 0.0

    def __post_init__(self) -> None:
        self._strand = re.compile(self.cfg.strand_pattern)
        self.channels = [{"name": c.name, "unit": c.unit} for c in self.validation.channels]

    def strand_of(self, casting_id: str) -> str | None:
        match = self._strand.search(casting_id)
        return match.group(1) if match and match.groups() else None

    def _track(self, casting_id: str, now_s: float) -> CastingTrack:
        track = self.castings.get(casting_id)
        if track is None:
            track = CastingTrack(casting_id, self.strand_of(casting_id), now_s, now_s)
            self.castings[casting_id] = track
            while len(self.castings) > self.cfg.max_castings:
                self.castings.popitem(last=False)
        track.last_seen_s = now_s
        return track

    def add_sensor(self, message: Readings | EndMarker, now_s: float) -> None:
        track = self._track(message.casting_id, now_s)
        if isinstance(message, EndMarker):
            track.n_steps = track.n_steps or message.n_steps
        else:
            track.add_rows(message.start_step, message.rows, self.validation.max_steps)

    def add_prediction(self, doc: PredictionDoc, now_s: float) -> CastingTrack:
        track = self._track(doc.casting_id, now_s)
        if track.prediction is None:  # a duplicate (re-sent) prediction is identical: counted once
            self.recent.append((now_s, doc.predicted_defect, doc.latency_ms))
        self.seq += 1
        track.prediction = doc
        track.n_steps = doc.n_steps
        track.attention = np.asarray(doc.attention, dtype=np.float32)
        track.shown_seq = self.seq
        self.model_version, self.threshold = doc.model_version, doc.threshold
        return track

    def add_deadletter(self, reason: str) -> None:
        self.deadletters[reason[:64]] += 1

    def forget_stale(self, now_s: float) -> int:
        """Drop castings with readings but no prediction for `pending_ttl_s` (abandoned or dead-lettered)."""
        stale = [cid for cid, t in self.castings.items()
                 if t.prediction is None and now_s - t.last_seen_s > self.cfg.pending_ttl_s]
        for cid in stale:
            del self.castings[cid]
        return len(stale)

    def rows(self, since_seq: int = 0, limit: int | None = None) -> list[dict]:
        """Scored castings, newest first; only those scored after `since_seq` when given."""
        scored = [t for t in self.castings.values() if t.shown_seq > since_seq]
        # newest scored first; ISO times of one format sort as text. Arrival order breaks ties.
        scored.sort(key=lambda t: (t.prediction.scored_at if t.prediction else "", t.shown_seq), reverse=True)
        return [t.row() for t in scored[:limit]]

    def detail(self, casting_id: str) -> dict | None:
        track = self.castings.get(casting_id)
        return None if track is None else track.detail(self.channels)

    def rates(self, now_s: float) -> dict:
        """Castings scored per minute (last 60 s), defect share and latency p50/p99 (last 5 min)."""
        while self.recent and now_s - self.recent[0][0] > RATE_WINDOW_S:
            self.recent.popleft()
        last_minute = sum(1 for t, _, _ in self.recent if now_s - t <= 60.0)
        minutes = min(1.0, max(now_s - self.started_s, 1.0) / 60.0)  # the first minute: scale up, not down
        latencies = np.array([lat for _, _, lat in self.recent], dtype=np.float64)
        defects = sum(1 for _, d, _ in self.recent if d)
        return {
            "castings_per_min": round(last_minute / minutes, 1),
            "defect_share": round(defects / len(self.recent), 4) if self.recent else None,
            "latency_p50_ms": round(float(np.percentile(latencies, 50)), 1) if len(latencies) else None,
            "latency_p99_ms": round(float(np.percentile(latencies, 99)), 1) if len(latencies) else None,
            "scored_in_window": len(self.recent),
            "deadletters": dict(self.deadletters),
            "model_version": self.model_version,
            "threshold": self.threshold,
            "lag": self.lag,
            "castings_kept": len(self.castings),
            "max_castings": self.cfg.max_castings,
        }
