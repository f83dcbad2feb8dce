"""The simulator: messages of one casting, interleaving of strands, rate limiting (no services)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from stream_app.config import ValidationConfig
from stream_app.service.messages import EndMarker, MessageParser, Readings
from stream_app.tools import simulate
from stream_app.tools.simulate import Casting, RateLimiter, casting_messages, interleave

CFG = ValidationConfig()


def values_within_limits(n_steps: int, seed: int) -> np.ndarray:
    """float64 values with many digits, inside every channel's limits."""
    rng = np.random.default_rng(seed)
    low = np.array([c.min for c in CFG.channels])
    high = np.array([c.max for c in CFG.channels])
    return low + (high - low) * rng.uniform(0.01, 0.99, size=(n_steps, len(low)))


def castings(lengths, seed=0) -> list[Casting]:
    return [Casting(f"C-{i}", values_within_limits(n, seed + i)) for i, n in enumerate(lengths)]


@pytest.mark.parametrize(
    ("n_steps", "chunk_size", "expected_starts"),
    [
        pytest.param(5, 1, [0, 1, 2, 3, 4], id="single-readings"),
        pytest.param(5, 0, [0, 1, 2, 3, 4], id="chunk-size-0-means-single"),
        pytest.param(10, 4, [0, 4, 8], id="chunks-last-short"),
        pytest.param(12, 4, [0, 4, 8], id="chunks-exact"),
        pytest.param(3, 10, [0], id="one-chunk-larger-than-casting"),
    ],
)
def test_casting_messages_shape(n_steps, chunk_size, expected_starts):
    values = values_within_limits(n_steps, seed=1)
    docs = [json.loads(m) for m in casting_messages("C-9", values, chunk_size)]
    readings, last = docs[:-1], docs[-1]
    assert last == {"type": "end", "casting_id": "C-9", "n_steps": n_steps}
    assert all(d["casting_id"] == "C-9" for d in docs)
    if chunk_size <= 1:
        assert [d["type"] for d in readings] == ["reading"] * n_steps
        assert [d["step"] for d in readings] == expected_starts
    else:
        assert [d["type"] for d in readings] == ["readings"] * len(expected_starts)
        assert [d["start_step"] for d in readings] == expected_starts
        assert sum(len(d["values"]) for d in readings) == n_steps
        assert all(len(d["values"]) <= chunk_size for d in readings)


@pytest.mark.parametrize("chunk_size", [1, 7], ids=["single", "chunks"])
def test_values_are_exact_float32_after_json_and_pass_the_parser(chunk_size):
    values = values_within_limits(40, seed=2)
    parser = MessageParser(CFG)
    rebuilt = np.full((40, 5), np.nan, dtype=np.float32)
    messages = list(casting_messages("C-1", values, chunk_size))
    for raw in messages[:-1]:
        doc = json.loads(raw)
        rows = doc["values"] if doc["type"] == "readings" else [doc["values"]]
        start = doc.get("start_step", doc.get("step"))
        np.testing.assert_array_equal(np.asarray(rows, dtype=np.float32),
                                      values[start:start + len(rows)].astype(np.float32))
        parsed = parser.parse(b"C-1", raw)
        assert isinstance(parsed, Readings)
        rebuilt[parsed.start_step:parsed.start_step + len(parsed.rows)] = parsed.rows
    assert parser.parse(b"C-1", messages[-1]) == EndMarker("C-1", 40)
    np.testing.assert_array_equal(rebuilt, values.astype(np.float32))


def _group(stream):
    per_casting: dict[str, list[dict]] = defaultdict(list)
    for key, raw in stream:
        doc = json.loads(raw)
        assert doc["casting_id"] == key
        per_casting[key].append(doc)
    return per_casting


@pytest.mark.parametrize(
    ("lengths", "strands", "chunk_size"),
    [
        pytest.param([3, 5, 2, 4, 6], 1, 1, id="one-strand"),
        pytest.param([3, 5, 2, 4, 6], 2, 1, id="two-strands"),
        pytest.param([3, 5, 2, 4, 6, 1, 7], 3, 1, id="three-strands"),
        pytest.param([9, 4, 11], 2, 3, id="two-strands-chunks"),
        pytest.param([2, 3], 5, 1, id="more-strands-than-castings"),
        pytest.param([], 3, 1, id="nothing"),
    ],
)
def test_interleave_emits_every_message_once_in_casting_order(lengths, strands, chunk_size):
    cs = castings(lengths)
    stream = list(interleave(cs, strands, chunk_size))
    per_casting = _group(stream)
    assert set(per_casting) == {c.casting_id for c in cs}
    for casting in cs:
        expected = [json.loads(m) for m in casting_messages(casting.casting_id, casting.values, chunk_size)]
        assert per_casting[casting.casting_id] == expected  # each message once, in order, end marker last
        assert per_casting[casting.casting_id][-1]["type"] == "end"
    assert len(stream) == sum(len(list(casting_messages(c.casting_id, c.values, chunk_size))) for c in cs)


def test_one_strand_emits_castings_one_after_another():
    cs = castings([3, 2, 4])
    keys = [key for key, _ in interleave(cs, 1)]
    assert keys == ["C-0"] * 4 + ["C-1"] * 3 + ["C-2"] * 5


@pytest.mark.parametrize("strands", [2, 3])
def test_several_strands_interleave_castings(strands):
    cs = castings([6] * (2 * strands))
    keys = [key for key, _ in interleave(cs, strands)]
    first_round = keys[:strands]
    assert len(set(first_round)) == strands  # each strand starts its own casting at once
    # up to, and never more than, `strands` castings are open (started, end marker not yet sent) at once
    open_ids: set[str] = set()
    seen: dict[str, int] = defaultdict(int)
    most_open = 0
    for key in keys:
        open_ids.add(key)
        seen[key] += 1
        most_open = max(most_open, len(open_ids))
        if seen[key] == 7:  # 6 readings + end marker
            open_ids.discard(key)
    assert most_open == strands


def test_rate_limiter_without_rate_never_sleeps(monkeypatch):
    def no_sleep(seconds):
        raise AssertionError(f"slept {seconds}")

    monkeypatch.setattr(simulate, "time", SimpleNamespace(monotonic=lambda: 0.0, sleep=no_sleep))
    for rate in (None, 0):
        limiter = RateLimiter(rate)
        for _ in range(1000):
            limiter.wait()
        limiter.wait(10_000)
        assert limiter.count == 11_000


def test_rate_limiter_sleeps_until_schedule(monkeypatch):
    clock = SimpleNamespace(now=100.0, slept=[])

    def sleep(seconds):
        clock.slept.append(seconds)
        clock.now += seconds

    monkeypatch.setattr(simulate, "time", SimpleNamespace(monotonic=lambda: clock.now, sleep=sleep))
    limiter = RateLimiter(100.0)
    limiter.wait(10)  # 10 events at 100/s should take 0.1 s
    assert clock.slept == [pytest.approx(0.1)]
    clock.now += 1.0  # fell behind: no sleep
    limiter.wait(50)
    assert clock.slept == [pytest.approx(0.1)]


EXAMPLE = str(Path(__file__).resolve().parents[2] / "configs" / "examples" / "slab-caster-12ch.yaml")


@pytest.mark.parametrize("config_path", [None, EXAMPLE], ids=["default-5", "example-12"])
def test_simulated_castings_follow_the_configured_channels_and_pass_the_parser(config_path):
    from stream_app.config import load_config

    cfg = load_config(config_path, environ={})
    channels = cfg.validation.channels
    items = simulate.load_castings(count=4, seed=1, prefix="S", channels=channels)
    parser = MessageParser(cfg.validation)
    for casting in items:
        assert casting.values.shape[1] == len(channels)
        for raw in casting_messages(casting.casting_id, casting.values, chunk_size=25):
            parser.parse(casting.casting_id.encode(), raw)  # raises on any value outside the limits


def test_default_channels_simulate_exactly_the_generators_castings():
    from models.synthetic import generate_castings

    items = simulate.load_castings(count=3, seed=9, prefix="S", channels=CFG.channels)
    for casting, values in zip(items, generate_castings(3, seed=9).sequences, strict=True):
        np.testing.assert_array_equal(casting.values, values)


@pytest.mark.parametrize("config_path", [None, EXAMPLE], ids=["default-5", "example-12"])
def test_bad_messages_get_their_promised_reason_for_any_channel_set(config_path):
    from stream_app.config import load_config
    from stream_app.errors import RejectedInput
    from stream_app.service.ingest_stage import IngestStage
    from stream_app.service.memory_window_store import MemoryWindowStore
    from stream_app.service.records import SourceRecord

    cfg = load_config(config_path, environ={})
    parser = MessageParser(cfg.validation)
    rng = np.random.default_rng(0)
    seen = set()
    for i in range(60):
        key, value, reason = simulate.bad_messages(rng, str(i), cfg.validation.channels)
        seen.add(reason)
        if reason == "unknown_casting":  # decided by the ingest stage: no readings before the end marker
            import asyncio

            outcome = asyncio.run(IngestStage(parser, MemoryWindowStore()).process(
                [SourceRecord("t", 0, i, key, value)], 0.0))
            assert [d.reason for d in outcome.deadletters] == [reason]
            continue
        with pytest.raises(RejectedInput) as error:
            parser.parse(key, value)
        assert error.value.reason == reason
    assert len(seen) == 5


def test_a_dataset_with_other_channels_than_the_config_is_refused(tmp_path):
    from models.synthetic import generate_castings, save_dataset
    from stream_app.config import load_config
    from stream_app.errors import SimulationError

    path = save_dataset(generate_castings(2, seed=0), tmp_path / "five.npz")
    twelve = load_config(EXAMPLE, environ={}).validation.channels
    with pytest.raises(SimulationError, match="holds 5 channels, the config names 12"):
        simulate.load_castings(count=0, seed=0, prefix="S", channels=twelve, dataset=str(path))


def test_a_readings_file_is_played_back_with_its_own_casting_ids(tmp_path):
    from models.dataset_file import write_readings

    items = simulate.load_castings(count=3, seed=2, prefix="S", channels=CFG.channels)
    path = tmp_path / "history.parquet"
    write_readings(path, [(f"PLANT-{i}", c.values) for i, c in enumerate(items)], [c.name for c in CFG.channels])
    back = simulate.load_castings(count=2, seed=0, prefix="ignored", channels=CFG.channels, dataset=str(path))
    assert [c.casting_id for c in back] == ["PLANT-0", "PLANT-1"]
    for a, b in zip(items, back, strict=False):
        np.testing.assert_array_equal(a.values, b.values)
