"""End markers seal, through a live worker: the orders that used to be decided by timing give the same
outcome sent in one burst and spread out (each phase sent only once the worker has acted on the one
before), and a casting id used again after its prediction gets a dead letter, never silence.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from stream_app.runtime.connections import create_redis_sync
from stream_app.tools.simulate import Casting, casting_messages, end_message
from tests.test_stream_app.harness import assert_predictions_match, make_castings, produce

pytestmark = pytest.mark.integration

REPEATS = 300  # copies of one end marker


def phases(casting: Casting, order: str) -> tuple[list[bytes], list[bytes], int, Counter]:
    """(messages up to and including the sealing end, messages after it, n_steps scored, dead letters)."""
    cid, values = casting.casting_id, casting.values
    n = len(values)
    if order == "second_end":  # end(n-50), steps n-50.., end(n): scored on n-50 steps
        head = list(casting_messages(cid, values[: n - 50], chunk_size=10))
        tail = [m for m in casting_messages(cid, values, chunk_size=1)][n - 50 :]
        return head, tail, n - 50, Counter({"late_reading": 50, "conflicting_end": 1})
    if order == "late_readings":  # end(n-10), steps n-10.., no second end
        head = list(casting_messages(cid, values[: n - 10], chunk_size=10))
        tail = [m for m in casting_messages(cid, values, chunk_size=1)][n - 10 : n]
        return head, tail, n - 10, Counter({"late_reading": 10})
    if order == "repeated_end":
        return list(casting_messages(cid, values, chunk_size=25)), [end_message(cid, n)] * REPEATS, n, Counter()
    if order == "conflicting_end":
        return list(casting_messages(cid, values, chunk_size=25)), [end_message(cid, n - 1)], n, Counter(
            {"conflicting_end": 1})
    raise ValueError(order)


ORDERS = ["second_end", "late_readings", "repeated_end", "conflicting_end"]


def outcomes(predictions, letters, prefix: str) -> tuple[dict, dict]:
    """Per casting (prefix removed): (n_steps, probability) and dead-letter reasons."""
    scored = {p["casting_id"].removeprefix(prefix): (p["n_steps"], p["defect_probability"]) for p in predictions}
    reasons: dict[str, Counter] = {}
    for letter in letters:
        reasons.setdefault(letter["casting_id"].removeprefix(prefix), Counter())[letter["reason"]] += 1
    return scored, reasons


def test_orders_around_an_end_marker_give_one_outcome_burst_or_spread(service_config, worker_factory,
                                                                       reader_factory, tiny_checkpoint):
    cfg = service_config(topics={"partitions": 2}, window={"abandon_after_s": 2, "sweep_interval_s": 0.5})
    worker = worker_factory(cfg).start()
    predictions = reader_factory(cfg, cfg.topics.predictions)
    letters = reader_factory(cfg, cfg.topics.deadletter)
    base = [c for c in make_castings(20, seed=97, prefix="") if len(c.values) >= 200][: len(ORDERS)]
    expected_letters = sum(sum(phases(c, o)[3].values()) for c, o in zip(base, ORDERS, strict=True))

    runs = {}
    for mode in ("burst", "spread"):
        castings = [Casting(f"{mode}{c.casting_id}", c.values) for c in base]
        plan = {c.casting_id: phases(c, o) for c, o in zip(castings, ORDERS, strict=True)}
        heads = [(cid.encode(), m) for cid, (head, _, _, _) in plan.items() for m in head]
        tails = [(cid.encode(), m) for cid, (_, tail, _, _) in plan.items() for m in tail]
        if mode == "burst":
            produce(cfg, heads + tails)
        else:  # the tail only once every casting was sealed and scored
            produce(cfg, heads)
            predictions.read_until(_count_of(mode, len(castings)), 120, check=_alive(worker))
            produce(cfg, tails)
        predictions.read_until(_count_of(mode, len(castings)), 120, check=_alive(worker))
        letters.read_until(_count_of(mode, expected_letters), 120, check=_alive(worker))
        mine = [p for p in predictions.json() if p["casting_id"].startswith(mode)]
        assert_predictions_match(mine, [Casting(cid, c.values[: plan[cid][2]]) for cid, c in
                                        ((c.casting_id, c) for c in castings)], tiny_checkpoint)
        runs[mode] = outcomes(mine, [x for x in letters.json() if x["casting_id"].startswith(mode)], mode)
        assert runs[mode][1] == {c.casting_id.removeprefix(mode): want for c, (_, _, _, want) in
                                 zip(castings, plan.values(), strict=True) if want}

    assert runs["burst"] == runs["spread"]
    # one prediction record per casting, and the repeats only counted
    assert len(predictions.records) == 2 * len(base)
    worker.wait_for(lambda: worker.metric("casting_repeated_end_markers_total") >= 2 * REPEATS, "repeats counted")
    assert worker.metric("casting_repeated_end_markers_total") == 2 * REPEATS
    # sealed castings are off the sweep's list: no `incomplete` will ever follow (abandon_after_s is 2 s)
    redis = create_redis_sync(cfg.redis)
    assert not [c for c in redis.zrange(f"{cfg.redis_prefix}:open", 0, -1)]
    assert not list(redis.scan_iter(f"{cfg.redis_prefix}:win:*"))
    redis.close()


def test_a_casting_id_used_again_after_its_prediction_is_dead_lettered(service_config, worker_factory,
                                                                        reader_factory, tiny_checkpoint):
    cfg = service_config()
    casting, again = make_castings(2, seed=98, prefix="X")
    reused = Casting(casting.casting_id, again.values)
    worker = worker_factory(cfg).start()
    key = casting.casting_id.encode()
    produce(cfg, [(key, m) for m in casting_messages(casting.casting_id, casting.values, chunk_size=50)])
    predictions = reader_factory(cfg, cfg.topics.predictions)
    predictions.read_distinct_keys(1, 120, worker)

    messages = list(casting_messages(reused.casting_id, reused.values, chunk_size=50))
    produce(cfg, [(key, m) for m in messages])
    letters = reader_factory(cfg, cfg.topics.deadletter)
    n_readings = len(messages) - 1
    same_length = len(reused.values) == len(casting.values)
    letters.read_until(lambda r: len(r) >= n_readings + (0 if same_length else 1), 120, check=_alive(worker))
    reasons = Counter(x["reason"] for x in letters.json())
    assert reasons["late_reading"] == n_readings
    assert "prediction was already produced" in letters.json()[0]["detail"]
    if not same_length:
        assert reasons["conflicting_end"] == 1
    predictions.poll(1000)
    assert len(predictions.records) == 1  # the first casting's prediction, unchanged
    assert_predictions_match(predictions.json(), [casting], tiny_checkpoint)


def _count_of(prefix: str, count: int):
    """A `read_until` condition: `count` records whose casting id starts with `prefix`."""
    return lambda records: sum(json.loads(r.value)["casting_id"].startswith(prefix) for r in records) >= count


def _alive(worker):
    def check() -> None:
        if not worker.alive():
            pytest.fail(f"worker exited:\n{worker.log_tail()}")

    return check
