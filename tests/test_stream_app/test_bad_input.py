"""Bad input: every case lands in the dead-letter topic with its reason; good castings still score."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stream_app.tools.simulate import casting_messages, end_message, reading_message
from tests.test_stream_app.harness import assert_predictions_match, make_castings, produce

pytestmark = pytest.mark.integration

GOOD_ROW = [1.2, 1520.0, 150.0, 200.0, 25.0]


def reading(cid: str, step, values=None, **extra) -> bytes:
    doc = {"type": "reading", "casting_id": cid, "step": step, "values": GOOD_ROW if values is None else values}
    doc.update(extra)
    return json.dumps(doc).encode()


def bad_cases(cfg) -> list[tuple[str, bytes | None, bytes]]:
    """(expected reason, key, value)."""
    big = json.dumps({"type": "readings", "casting_id": "X-big", "start_step": 0,
                      "values": [GOOD_ROW] * 20_000}).encode()
    assert len(big) > cfg.validation.max_message_bytes
    return [
        ("malformed_json", b"X-json", b'{"type": "reading", "casting_id": '),
        ("malformed_json", b"X-utf8", b'{"type": "reading", "casting_id": "X-utf8\xff"}'),
        ("not_an_object", b"X-list", b"[1, 2, 3]"),
        ("missing_field", b"X-miss", json.dumps({"type": "reading", "casting_id": "X-miss", "step": 1}).encode()),
        ("bad_type", b"X-type", reading("X-type", "seven")),
        ("bad_type", b"X-type2", reading("X-type2", 3, values=[1.2, "hot", 150.0, 200.0, 25.0])),
        ("unknown_type", b"X-kind", json.dumps({"type": "pause", "casting_id": "X-kind"}).encode()),
        ("wrong_channel_count", b"X-ch", reading("X-ch", 1, values=GOOD_ROW[:4])),
        ("non_finite", b"X-nan", b'{"type":"reading","casting_id":"X-nan","step":1,"values":[NaN,1520,150,200,25]}'),
        ("non_finite", b"X-inf",
         b'{"type":"reading","casting_id":"X-inf","step":1,"values":[1.2,Infinity,150,200,25]}'),
        ("out_of_limits", b"X-lim", reading("X-lim", 1, values=[1.2, 2000.0, 150.0, 200.0, 25.0])),
        ("bad_step", b"X-neg", reading("X-neg", -1)),
        ("bad_step", b"X-max", reading("X-max", cfg.validation.max_steps)),
        ("key_mismatch", b"X-other", reading("X-mine", 1)),
        ("bad_key", b"\xff\xfe", reading("X-key", 1)),
        ("bad_key", None, reading("X-nokey", 1)),
        ("oversized", b"X-big", big),
        ("unknown_casting", b"X-ghost", end_message("X-ghost", 200)),
    ]


def test_bad_input_is_dead_lettered_and_good_castings_score(service_config, worker_factory, reader_factory,
                                                             tiny_checkpoint):
    cfg = service_config(topics={"partitions": 4})
    good = make_castings(24, seed=41, prefix="OK")
    rng = np.random.default_rng(0)
    messages: list[tuple[bytes | None, bytes]] = []
    cases = bad_cases(cfg)
    # interleave a bad record after every few good ones, on every partition the good castings use
    for i, casting in enumerate(good):
        key = casting.casting_id.encode()
        msgs = list(casting_messages(casting.casting_id, casting.values, chunk_size=1 if i % 2 else 25))
        if i == 0:  # duplicate and out-of-order steps are accepted and ordered
            readings, end = msgs[:-1], msgs[-1]
            readings = readings + readings[:10]
            rng.shuffle(readings)
            msgs = [*readings, end]
        messages.extend((key, m) for m in msgs)
        if i < len(cases):
            _, bad_key, bad_value = cases[i]
            messages.append((bad_key, bad_value))
    # window-level rejections: too short, too many gaps
    messages.extend((b"X-short", reading("X-short", s)) for s in range(50))
    messages.append((b"X-short", end_message("X-short", 50)))
    gappy = make_castings(1, seed=42, prefix="X-gaps")[0]
    messages.extend((b"X-gaps-0000", reading_message("X-gaps-0000", s, gappy.values[s].tolist()))
                    for s in range(len(gappy.values)) if s % 5)
    messages.append((b"X-gaps-0000", end_message("X-gaps-0000", len(gappy.values))))

    worker = worker_factory(cfg).start()
    produce(cfg, messages)
    expected_reasons = sorted([reason for reason, _, _ in cases] + ["too_short", "too_many_gaps"])

    predictions = reader_factory(cfg, cfg.topics.predictions)
    deadletters = reader_factory(cfg, cfg.topics.deadletter)
    check = lambda: None if worker.alive() else pytest.fail(worker.log_tail())  # noqa: E731
    predictions.read_distinct_keys(len(good), 180, worker)
    deadletters.read_until(lambda r: len(r) >= len(expected_reasons), timeout_s=60, check=check)
    deadletters.poll(2000)  # nothing more than expected

    assert_predictions_match(predictions.json(), good, tiny_checkpoint)
    letters = deadletters.json()
    assert sorted(letter["reason"] for letter in letters) == expected_reasons
    for letter in letters:
        assert letter["detail"]
        assert letter["source"]["topic"] == cfg.topics.sensors
        if letter["reason"] not in ("too_many_gaps",):
            assert isinstance(letter["source"]["partition"], int) and letter["source"]["offset"] >= 0
    by_reason = {letter["reason"]: letter for letter in letters}
    assert by_reason["oversized"]["payload_truncated"] is True
    assert by_reason["bad_key"]["key"] in ({"base64": "//4="}, None)
    assert worker.alive()
