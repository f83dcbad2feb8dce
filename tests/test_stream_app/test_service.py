"""The worker end to end: real broker, real Redis, `stream-app worker` as a subprocess."""

from __future__ import annotations

import pytest

from tests.test_stream_app.harness import assert_predictions_match, make_castings, produce_castings

pytestmark = pytest.mark.integration


def test_300_castings_over_4_partitions_match_offline_forward(service_config, worker_factory, reader_factory,
                                                               tiny_checkpoint):
    cfg = service_config(topics={"partitions": 4})
    castings = make_castings(300, seed=11, prefix="A")
    worker = worker_factory(cfg).start()
    produce_castings(cfg, castings)

    reader = reader_factory(cfg, cfg.topics.predictions)

    records = reader.read_distinct_keys(len(castings), 240, worker)
    assert len({r.key for r in records}) == len(castings), worker.log_tail()
    assert_predictions_match(reader.json(), castings, tiny_checkpoint)
    partitions = {r.partition for r in records}
    assert len(partitions) == 4
    assert worker.terminate() == 0, worker.log_tail()
