"""Synthetic continuous-casting sensor data whose defects are written into the signals.

Each casting is a ``[T, 5]`` float32 array at 1 Hz (T in 100..500) in raw physical units, in the order of
the default line's channels: casting speed (m/min), mold temperature (°C), mold level (mm), cooling water
flow (L/min), superheat (°C). Values always stay inside the hard limits (``HARD_LIMITS``).

Signal model: a per-casting operating point, slow Ornstein-Uhlenbeck drifts, white sensor noise and
couplings (speed changes disturb the mold level; less cooling water warms the mold; superheat warms
it too). On top come discrete process events:

- ``excursion``: mold-level excursion, a damped oscillation of 12..25 mm over ~15 s;
- ``drop``: sudden mold-temperature drop of 15..35 °C, recovering over ~15 s (sticker-like);
- ``surge``: casting-speed surge of +0.2..0.4 m/min for 10..20 s;
- ``cooling``: cooling-water disturbance, flow -25..-50 L/min for 10..30 s;
- ``superheat dip``: a slow superheat dip to 14..18 °C over ~60 s.

Defect mechanisms depend on the order and timing of events, not on their presence:

1. sticker: an excursion followed 3..30 s later by a temperature drop (a drop *before* an excursion is
   a benign look-alike);
2. surge during low superheat: a speed surge while superheat < ~20 °C (a surge at normal superheat,
   or a dip without a surge, is benign);
3. cooling upset after an excursion: a cooling disturbance starting 0..25 s after an excursion (one
   *before* the excursion is benign).

A casting is cut into slots of ~80 s. At most one slot holds a planted mechanism (5% of castings
each); the other slots hold benign look-alikes (35%), single events (25%) or nothing, so event counts
and summary statistics say little about the label. The latent risk is computed from the events as
they happened: ``sigmoid(-5 + 8.5 s1 + 8.5 s2 + 7.5 s3)``, each ``s`` in [0, 1] graded by timing (or by
the superheat during the surge); the label is a Bernoulli draw from it (prevalence ~15%).
``oracle_auc`` is the AUC of the latent risk itself: the best any model can do on a dataset.

Casting ``i`` of ``generate_castings(n, seed)`` does not depend on ``n`` (one child seed per casting).

Any channel set (``channels=``, 1..64 `SignalChannel`s, as a plant config names them): the five process
signals above are *roles*, given by position to the first five channels (a channel whose limits are the
role's own gets the signal unchanged, others get it mapped linearly onto their limits); channels beyond
the fifth carry plain process noise (slow drift plus white noise inside their limits) from a random
stream of their own. So the defect mechanisms live on the first channels, the rest is noise a model
must learn to ignore, and the default five-channel output is bit-identical with or without ``channels``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

__all__ = [
    "HARD_LIMITS",
    "MAX_CHANNELS",
    "NOMINAL",
    "ROLES",
    "SignalChannel",
    "SyntheticCastings",
    "generate_casting",
    "generate_castings",
    "load_dataset",
    "oracle_auc",
    "save_dataset",
]

# the generator's own physics: five signal roles in this column order, with nominal values and hard limits
ROLES = ("speed", "temperature", "level", "flow", "superheat")
MAX_CHANNELS = 64
NOMINAL = np.array([1.2, 1520.0, 150.0, 200.0, 25.0])
HARD_LIMITS = np.array([[0.5, 2.5], [1400.0, 1650.0], [100.0, 200.0], [100.0, 300.0], [10.0, 50.0]])
_SAFE_LIMITS = HARD_LIMITS + np.array([0.01, -0.01]) * (HARD_LIMITS[:, 1:] - HARD_LIMITS[:, :1])

# per casting: probability of one planted mechanism; per remaining slot: look-alike / single event
_MECHANISM_P = {"sticker": 0.05, "surge_low_superheat": 0.05, "cooling_after_excursion": 0.05}
_LOOKALIKE_P, _SINGLE_P = 0.35, 0.25
_LOOKALIKES = ("drop_then_excursion", "surge_normal_superheat", "dip_without_surge", "cooling_then_excursion")
_SINGLES = ("excursion", "drop", "cooling", "surge")
_SLOT_S = 80
_BIAS, _WEIGHTS = -5.0, np.array([8.5, 8.5, 7.5])


@dataclass(frozen=True)
class SignalChannel:
    """One channel to generate: a name and hard limits (``low < high``) the values stay inside."""

    name: str
    low: float
    high: float


@dataclass
class SyntheticCastings:
    sequences: list[np.ndarray]  # each [T_i, 5] float32, raw units
    labels: np.ndarray  # (N,) int64 0/1
    risk: np.ndarray  # (N,) float64 latent defect probability
    mechanisms: np.ndarray  # (N, 3) float64 mechanism strengths s1..s3
    seed: int | None = None
    meta: dict = field(default_factory=dict)
    spans: np.ndarray | None = None  # (N, 2) steps spanned by the planted mechanism, nan when none

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(s) for s in self.sequences], dtype=np.int64)

    def subset(self, idx: np.ndarray) -> SyntheticCastings:
        idx = np.asarray(idx)
        return SyntheticCastings(
            [self.sequences[i] for i in idx],
            self.labels[idx],
            self.risk[idx],
            self.mechanisms[idx],
            self.seed,
            dict(self.meta),
            None if self.spans is None else self.spans[idx],
        )


def _ou(rng: np.random.Generator, n: int, tau_s: float, sigma: float) -> np.ndarray:
    """Ornstein-Uhlenbeck drift with time constant ``tau_s`` and stationary std ``sigma``."""
    a = np.exp(-1.0 / tau_s)
    noise = rng.normal(0.0, sigma * np.sqrt(1 - a * a), n)
    start = rng.normal(0.0, sigma)
    return lfilter([1.0], [1.0, -a], noise, zi=[a * start])[0]


def _ramp(x: float, full: float, zero: float) -> float:
    """1 at/below ``full``, 0 at/above ``zero``, linear between (works for either ordering)."""
    if full == zero:
        return float(x <= full)
    return float(np.clip((zero - x) / (zero - full), 0.0, 1.0))


def _sticker_strength(excursions: list[float], drops: list[float]) -> float:
    best = 0.0
    for te in excursions:
        for td in drops:
            gap = td - te
            if gap < 1.0:
                continue
            best = max(best, _ramp(gap, 30.0, 40.0) * _ramp(-gap, -3.0, -1.0))
    return best


def _cooling_strength(excursions: list[float], coolings: list[float]) -> float:
    best = 0.0
    for te in excursions:
        for tc in coolings:
            gap = tc - te
            if gap >= 0:
                best = max(best, _ramp(gap, 25.0, 35.0))
    return best


def generate_casting(rng: np.random.Generator) -> tuple[np.ndarray, float, np.ndarray, tuple[float, float]]:
    """One casting: (values [T, 5] float32, latent risk, mechanism strengths (3,), planted-mechanism span).

    The span is (first step, last step) of the planted mechanism's events, (nan, nan) when none.
    """
    n = int(rng.integers(100, 501))
    t = np.arange(n, dtype=np.float64)

    mech_span = (float("nan"), float("nan"))
    excursions: list[float] = []
    drops: list[float] = []
    surges: list[tuple[float, float]] = []  # (start, duration)
    coolings: list[float] = []
    dips: list[float] = []

    # The casting is cut into slots of ~_SLOT_S seconds; each scenario (a planted mechanism, a benign
    # look-alike or a single event) lives in its own slot, so scenarios do not combine by accident.
    n_slots = max(1, n // _SLOT_S)
    slot_len = n / n_slots
    scenarios: list[str] = []
    u = rng.random()
    for name, p in _MECHANISM_P.items():
        if u < p:
            scenarios.append(name)
            break
        u -= p
    for _ in range(n_slots - len(scenarios)):
        v = rng.random()
        if v < _LOOKALIKE_P:
            scenarios.append(str(rng.choice(_LOOKALIKES)))
        elif v < _LOOKALIKE_P + _SINGLE_P:
            scenarios.append(str(rng.choice(_SINGLES)))

    for slot, scenario in zip(rng.permutation(n_slots), scenarios, strict=False):
        lo = slot * slot_len + 3.0
        span = max(slot_len - 50.0, 1.0)  # room for the scenario's own extent

        def at(offset: float = 0.0, lo: float = lo, span: float = span) -> float:
            return lo + offset + float(rng.uniform(0.0, span))

        if scenario == "sticker":  # excursion, then a drop 4..25 s later
            te = at()
            excursions.append(te)
            drops.append(te + rng.uniform(4.0, 25.0))
            mech_span = (te, drops[-1] + 10.0)
        elif scenario == "surge_low_superheat":  # surge inside a superheat dip
            td = at(15.0)
            dips.append(td)
            surges.append((td + rng.uniform(-8.0, 4.0), rng.uniform(10.0, 20.0)))
            mech_span = (surges[-1][0], surges[-1][0] + surges[-1][1])
        elif scenario == "cooling_after_excursion":  # cooling upset 1..20 s after an excursion
            te = at()
            excursions.append(te)
            coolings.append(te + rng.uniform(1.0, 20.0))
            mech_span = (te, coolings[-1] + 10.0)
        elif scenario == "drop_then_excursion":  # benign: reversed order
            td = at()
            drops.append(td)
            excursions.append(td + rng.uniform(5.0, 25.0))
        elif scenario == "surge_normal_superheat":
            surges.append((at(), rng.uniform(10.0, 20.0)))
        elif scenario == "dip_without_surge":
            dips.append(at(15.0))
        elif scenario == "cooling_then_excursion":  # benign: reversed order
            tc = at()
            coolings.append(tc)
            excursions.append(tc + rng.uniform(12.0, 30.0))
        elif scenario == "excursion":
            excursions.append(at())
        elif scenario == "drop":
            drops.append(at())
        elif scenario == "cooling":
            coolings.append(at())
        else:  # "surge"
            surges.append((at(), rng.uniform(10.0, 20.0)))

    # ---- continuous signals
    speed0 = rng.normal(1.2, 0.06)
    temp0 = rng.normal(1520.0, 8.0)
    level0 = rng.normal(150.0, 2.0)
    flow0 = rng.normal(200.0, 8.0)
    sh0 = rng.normal(27.0, 2.0)

    superheat = sh0 + _ou(rng, n, 120.0, 1.2)
    for td in dips:
        depth = sh0 - rng.uniform(14.0, 18.0)
        superheat -= depth * np.exp(-0.5 * ((t - td) / 25.0) ** 2)

    speed = speed0 + _ou(rng, n, 60.0, 0.02)
    for ts, dur in surges:
        amp = rng.uniform(0.2, 0.4)
        speed += amp * 0.5 * (np.tanh((t - ts) / 2.0) - np.tanh((t - ts - dur) / 2.0))

    flow = flow0 + _ou(rng, n, 80.0, 3.0)
    for tc in coolings:
        amp, dur = rng.uniform(25.0, 50.0), rng.uniform(10.0, 30.0)
        flow -= amp * 0.5 * (np.tanh((t - tc) / 1.5) - np.tanh((t - tc - dur) / 3.0))

    # mold level: controller residual responds to speed changes (high-pass of speed), plus excursions
    speed_slow = lfilter([0.1], [1.0, -0.9], speed - speed0) + speed0
    level = level0 + _ou(rng, n, 20.0, 0.8) - 25.0 * (speed - speed_slow)
    for te in excursions:
        amp, period, decay = rng.uniform(12.0, 25.0) * rng.choice([-1, 1]), rng.uniform(4.0, 8.0), rng.uniform(4, 7)
        dt = np.clip(t - te, 0.0, None)
        level += (t >= te) * amp * np.exp(-dt / decay) * np.sin(2 * np.pi * dt / period)

    # mold temperature: superheat warms it, cooling water cools it, plus sticker-like drops
    temp = temp0 + _ou(rng, n, 90.0, 3.0) + 0.8 * (superheat - sh0) - 0.12 * (flow - flow0)
    for td in drops:
        amp, tau = rng.uniform(15.0, 35.0), rng.uniform(8.0, 20.0)
        dt = np.clip(t - td, 0.0, None)
        temp -= (t >= td) * amp * np.minimum(dt / 2.0, 1.0) * np.exp(-np.clip(dt - 2.0, 0, None) / tau)

    # ---- risk from the events as they happened (timing and superheat at the surge)
    s1 = _sticker_strength(excursions, drops)
    s2 = 0.0
    for ts, dur in surges:
        lo, hi = int(max(ts, 0)), int(min(ts + dur, n - 1)) + 1
        if lo < hi:
            s2 = max(s2, _ramp(float(superheat[lo:hi].min()), 18.5, 21.0))
    s3 = _cooling_strength(excursions, coolings)
    mech = np.array([s1, s2, s3])
    risk = 1.0 / (1.0 + np.exp(-(_BIAS + _WEIGHTS @ mech)))

    noise = rng.normal(0.0, 1.0, (n, 5)) * np.array([0.004, 1.5, 1.0, 1.5, 0.3])
    values = np.stack([speed, temp, level, flow, superheat], axis=1) + noise
    values = np.clip(values, _SAFE_LIMITS[:, 0], _SAFE_LIMITS[:, 1])
    return values.astype(np.float32), float(risk), mech, mech_span


def _check_channels(channels: Sequence[SignalChannel]) -> None:
    if not 1 <= len(channels) <= MAX_CHANNELS:
        raise ValueError(f"between 1 and {MAX_CHANNELS} channels, got {len(channels)}")
    names = [c.name for c in channels]
    if len(set(names)) != len(names):
        raise ValueError(f"channel names must be unique: {names}")
    for c in channels:
        if not c.low < c.high:
            raise ValueError(f"channel {c.name}: low {c.low} must be below high {c.high}")


def _noise_channel(rng: np.random.Generator, n: int, low: float, high: float) -> np.ndarray:
    """Plain process noise inside [low, high]: an operating point, a slow drift and sensor noise."""
    width = high - low
    level = low + width * rng.uniform(0.4, 0.6)
    return level + _ou(rng, n, rng.uniform(30.0, 120.0), 0.03 * width) + rng.normal(0.0, 0.01 * width, n)


def map_channels(values: np.ndarray, channels: Sequence[SignalChannel], noise_rng: np.random.Generator) -> np.ndarray:
    """The five role columns of ``values`` (T, 5) onto ``channels``: (T, len(channels)) float32."""
    n = len(values)
    out = np.empty((n, len(channels)), dtype=np.float32)
    for j, channel in enumerate(channels):
        limits = np.array([channel.low, channel.high])
        if j < len(ROLES):
            role_low, role_high = HARD_LIMITS[j]
            if channel.low == role_low and channel.high == role_high:
                out[:, j] = values[:, j]  # the role's own limits: the signal as generated, bit for bit
                continue
            column = channel.low + (values[:, j].astype(np.float64) - role_low) * (
                (channel.high - channel.low) / (role_high - role_low))
        else:
            column = _noise_channel(noise_rng, n, channel.low, channel.high)
        safe = limits + np.array([0.01, -0.01]) * (channel.high - channel.low)
        out[:, j] = np.clip(column, safe[0], safe[1])
    return out


def generate_castings(
    n: int, seed: int = 0, channels: Sequence[SignalChannel] | None = None
) -> SyntheticCastings:
    """``n`` castings, deterministic from ``seed``; labels ~ Bernoulli(latent risk).

    ``channels``: the channel set to produce (see the module docstring); None: the five role signals.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    if channels is not None:
        _check_channels(channels)
    children = np.random.SeedSequence(seed).spawn(n)
    sequences, risks, mechs, labels = [], np.zeros(n), np.zeros((n, 3)), np.zeros(n, dtype=np.int64)
    spans = np.full((n, 2), np.nan)
    for i, child in enumerate(children):
        rng = np.random.default_rng(child)
        values, risk, mech, span = generate_casting(rng)
        if channels is not None:
            # a stream of its own, so the role signals and labels stay those of the default set
            noise_rng = np.random.default_rng(np.random.SeedSequence(child.entropy, spawn_key=(*child.spawn_key, 1)))
            values = map_channels(values, channels, noise_rng)
        sequences.append(values)
        risks[i], mechs[i], spans[i] = risk, mech, span
        labels[i] = int(rng.random() < risk)
    meta: dict = {"generator": "models.synthetic/v1"}
    if channels is not None:
        meta["channels"] = [c.name for c in channels]
    return SyntheticCastings(sequences, labels, risks, mechs, seed, meta, spans)


def oracle_auc(data: SyntheticCastings) -> float:
    """AUC-ROC of the latent risk against the labels: the best achievable on this dataset."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(data.labels, data.risk))


def save_dataset(data: SyntheticCastings, path: str | Path) -> Path:
    """Write an NPZ: concatenated values plus per-casting offsets, labels, risk, mechanisms."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lengths = data.lengths
    names = data.meta.get("channels") or ROLES
    values = np.concatenate(data.sequences, axis=0) if len(data) else np.zeros((0, len(names)), np.float32)
    np.savez_compressed(
        path,
        values=values,
        lengths=lengths,
        labels=data.labels,
        risk=data.risk,
        mechanisms=data.mechanisms,
        seed=np.array(-1 if data.seed is None else data.seed),
        spans=np.full((len(data), 2), np.nan) if data.spans is None else data.spans,
        channels=np.array(names),
    )
    return path


def load_dataset(path: str | Path) -> SyntheticCastings:
    """Read a dataset written by ``save_dataset``."""
    with np.load(Path(path), allow_pickle=False) as z:
        lengths = z["lengths"]
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        values = z["values"]
        sequences = [values[offsets[i] : offsets[i + 1]].copy() for i in range(len(lengths))]
        seed = int(z["seed"])
        return SyntheticCastings(
            sequences,
            z["labels"].astype(np.int64),
            z["risk"].astype(np.float64),
            z["mechanisms"],
            None if seed < 0 else seed,
            {"source": str(path)},
            z["spans"] if "spans" in z.files else None,
        )


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Write a synthetic casting dataset (NPZ) for --data.")
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    data = generate_castings(args.n, seed=args.seed)
    save_dataset(data, args.out)
    prevalence, oracle = data.labels.mean(), oracle_auc(data)
    print(f"wrote {args.out}: {len(data)} castings, prevalence {prevalence:.3f}, oracle AUC {oracle:.4f}")
