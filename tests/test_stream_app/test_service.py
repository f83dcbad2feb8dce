"""The worker end to end: real broker, real Redis, `stream-app worker` as a subprocess."""

from __future__ import annotations

import numpy as np
import pytest

from models.synthetic import generate_castings
from stream_app.simulate import Casting, interleave
from tests.test_stream_app.harness import offline_probabilities, produce

pytestmark = pytest.mark.integration


def make_castings(n: int, seed: int, prefix: str) -> list[Casting]:
    data = generate_castings(n, seed=seed)
    return [Casting(f"{prefix}-{i:04d}", seq) for i, seq in enumerate(data.sequences)]


def produce_castings(cfg, castings: list[Casting], strands: int = 4, chunk_sizes=(1, 10, 50)) -> None:
    """Castings spread over chunk sizes (single readings, chunks of 10 and 50), strands interleaved."""
    messages = []
    for k, chunk in enumerate(chunk_sizes):
        group = castings[k :: len(chunk_sizes)]
        messages.extend(interleave(group, strands=strands, chunk_size=chunk))
    produce(cfg, ((key.encode(), value) for key, value in messages))


def assert_predictions_match(predictions: list[dict], castings: list[Casting], checkpoint) -> None:
    by_id: dict[str, dict] = {}
    for p in predictions:
        if p["casting_id"] in by_id:  # at-least-once: a duplicate must be identical (timing fields aside)
            first = by_id[p["casting_id"]]
            assert p == first, f"duplicate prediction for {p['casting_id']} differs"
        by_id[p["casting_id"]] = p
    expected_ids = {c.casting_id for c in castings}
    assert set(by_id) == expected_ids, f"missing: {sorted(expected_ids - set(by_id))[:10]}"
    reference = offline_probabilities(checkpoint, {c.casting_id: c.values for c in castings})
    for casting in castings:
        p = by_id[casting.casting_id]
        assert p["n_steps"] == len(casting.values)
        assert abs(p["defect_probability"] - reference[casting.casting_id]) < 1e-5, casting.casting_id
        attention = np.asarray(p["attention"])
        assert attention.shape == (len(casting.values),)
        assert abs(attention.sum() - 1.0) < 1e-4
        assert p["predicted_defect"] == (p["defect_probability"] >= p["threshold"])


def test_300_castings_over_4_partitions_match_offline_forward(service_config, worker_factory, reader_factory,
                                                               tiny_checkpoint):
    cfg = service_config(topics={"partitions": 4})
    castings = make_castings(300, seed=11, prefix="A")
    lengths = [len(c.values) for c in castings]
    assert min(lengths) >= 100 and max(lengths) <= 500
    worker = worker_factory(cfg).start()
    produce_castings(cfg, castings)

    reader = reader_factory(cfg, cfg.topics.predictions)

    def check() -> None:
        assert worker.alive(), worker.log_tail()

    records = reader.read_until(lambda r: len({x.key for x in r}) >= len(castings), timeout_s=240, check=check)
    assert len({r.key for r in records}) == len(castings), worker.log_tail()
    assert_predictions_match(reader.json(), castings, tiny_checkpoint)
    partitions = {r.partition for r in records}
    assert len(partitions) == 4
    assert worker.terminate() == 0, worker.log_tail()
