"""Replay: same probabilities as the live run, exact --from semantics, no effect on the live worker."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from stream_app.runtime.connections import create_redis_sync
from stream_app.runtime.replay import run_replay
from stream_app.service.model_runner import Scorer
from stream_app.tools.simulate import casting_messages, interleave, reading_message
from tests.test_stream_app.harness import make_castings, produce, produce_castings

pytestmark = pytest.mark.integration


def replay(cfg, checkpoint, **kwargs):
    replay_cfg = cfg.model_copy(update={"app_id": f"{cfg.app_id}-replay"})
    scorer = Scorer.from_checkpoint(checkpoint, "cpu")
    return asyncio.run(run_replay(replay_cfg, scorer, **kwargs)), replay_cfg


def by_casting(reader) -> dict[str, dict]:
    return {p["casting_id"]: p for p in reader.json()}


def test_replay_matches_live_run_and_leaves_live_worker_alone(service_config, worker_factory, reader_factory,
                                                              tiny_checkpoint):
    cfg = service_config(topics={"partitions": 4})
    castings = make_castings(60, seed=71, prefix="R")
    worker = worker_factory(cfg).start()
    produce_castings(cfg, castings)
    live = reader_factory(cfg, cfg.topics.predictions)
    live.read_distinct_keys(len(castings), 180, worker)
    redis = create_redis_sync(cfg.redis)
    live_keys_before = sorted(redis.scan_iter(f"{cfg.redis_prefix}:*"))
    live_count_before = len(live.records)

    summary, replay_cfg = replay(cfg, tiny_checkpoint, predictions_topic=f"{cfg.topics.predictions}.replay",
                                 deadletter_topic=f"{cfg.topics.deadletter}.replay")
    assert summary.castings_scored == len(castings)
    assert summary.readings == sum(len(c.values) for c in castings)
    assert not summary.deadletters

    replayed = reader_factory(cfg, f"{cfg.topics.predictions}.replay")
    replayed.read_until(lambda r: len(r) >= len(castings), timeout_s=30)
    live_p, replay_p = by_casting(live), by_casting(replayed)
    assert set(replay_p) == set(live_p)
    for casting_id, prediction in live_p.items():
        assert replay_p[casting_id]["defect_probability"] == prediction["defect_probability"], casting_id
        assert replay_p[casting_id]["model_version"] == prediction["model_version"]

    # the live side saw nothing of it: no new live predictions, its Redis keys as they were, none of the replay's left
    live.poll(1000)
    assert len(live.records) == live_count_before
    assert sorted(redis.scan_iter(f"{cfg.redis_prefix}:*")) == live_keys_before
    assert not list(redis.scan_iter(f"{replay_cfg.redis_prefix}:*"))
    assert worker.alive()
    redis.close()


def test_replay_scores_batches_that_span_fetches_once_each_and_alike(service_config, reader_factory,
                                                                    tiny_checkpoint):
    """Tiny fetches and batches: a batch gathers end markers from several fetches, is scored while the next
    fetches are read, and the last, partial one at the end; every casting once, as with the defaults."""
    cfg = service_config(topics={"partitions": 2})
    castings = make_castings(23, seed=77, prefix="SPANB")
    produce_castings(cfg, castings)
    reference, _ = replay(cfg, tiny_checkpoint, predictions_topic=f"{cfg.topics.predictions}.ref")
    small = cfg.model_copy(update={"batching": cfg.batching.model_copy(
        update={"ingest_take_size": 7, "max_batch_size": 5})})  # 23 castings: 4 full batches and one of 3
    summary, _ = replay(small, tiny_checkpoint, predictions_topic=f"{cfg.topics.predictions}.small")
    assert summary.castings_scored == reference.castings_scored == len(castings)
    assert summary.readings == reference.readings and not summary.deadletters and summary.open_at_stop == 0

    ref = reader_factory(cfg, f"{cfg.topics.predictions}.ref")
    ref.read_until(lambda r: len(r) >= len(castings), timeout_s=30)
    got = reader_factory(cfg, f"{cfg.topics.predictions}.small")
    got.read_until(lambda r: len(r) >= len(castings), timeout_s=30)
    got.poll(1000)
    assert sorted(p["casting_id"] for p in got.json()) == sorted(c.casting_id for c in castings)  # no duplicates
    assert {p["batch_size"] for p in got.json()} == {5, 3}
    ref_p = by_casting(ref)
    for casting_id, prediction in by_casting(got).items():
        assert prediction["defect_probability"] == ref_p[casting_id]["defect_probability"], casting_id


def test_replay_from_a_time_scores_exactly_the_castings_that_start_after_it(service_config, reader_factory,
                                                                            tiny_checkpoint):
    cfg = service_config(topics={"partitions": 2})
    before = make_castings(10, seed=81, prefix="EARLY")
    after = make_castings(12, seed=82, prefix="LATE")
    straddling = make_castings(1, seed=83, prefix="SPAN")[0]
    span_messages = list(casting_messages(straddling.casting_id, straddling.values, chunk_size=10))
    half = len(span_messages) // 2

    # explicit record timestamps, a minute either side of the cut (all in the past, within the replay's
    # look-back of window.abandon_after_s, so the straddling casting's first half is seen)
    cut_ms = int(time.time() * 1000) - 120_000
    cut = datetime.fromtimestamp(cut_ms / 1000, UTC)
    early_ms, late_ms = cut_ms - 60_000, cut_ms + 60_000
    produce(cfg, ((k.encode(), v) for k, v in interleave(before, strands=3, chunk_size=10)), timestamp_ms=early_ms)
    produce(cfg, ((straddling.casting_id.encode(), m) for m in span_messages[:half]), timestamp_ms=early_ms)
    produce(cfg, ((straddling.casting_id.encode(), m) for m in span_messages[half:]), timestamp_ms=late_ms)
    produce(cfg, ((k.encode(), v) for k, v in interleave(after, strands=3, chunk_size=10)), timestamp_ms=late_ms)

    summary, _ = replay(cfg, tiny_checkpoint, start=cut.isoformat())
    replayed = reader_factory(cfg, f"{cfg.topics.predictions}.replay")
    replayed.read_until(lambda r: len(r) >= len(after), timeout_s=30)
    replayed.poll(1000)
    assert set(by_casting(replayed)) == {c.casting_id for c in after}
    assert summary.castings_scored == len(after)
    assert summary.started_before_from == 1  # the straddling casting: its window would be partial

    # --until before the late castings end: they are open at the stop and skipped, nothing scored twice
    until_summary, _ = replay(cfg, tiny_checkpoint, start="earliest", until=cut.isoformat(),
                              predictions_topic=f"{cfg.topics.predictions}.until")
    assert until_summary.castings_scored == len(before)
    assert until_summary.open_at_stop == 1


def test_replay_rescores_a_casting_whose_first_reading_was_rejected(service_config, worker_factory,
                                                                    reader_factory, tiny_checkpoint):
    """'Began before --from' is decided from offsets: a casting whose step 0 was dead-lettered live (and
    gap-filled) is replayed from earliest and scored exactly as live, not skipped as partial."""
    cfg = service_config(topics={"partitions": 1})
    casting = make_castings(1, seed=99, prefix="FR")[0]
    messages = list(casting_messages(casting.casting_id, casting.values, chunk_size=1))
    bad_row = [9.9, *casting.values[0, 1:].tolist()]  # casting_speed far outside its limits
    messages[0] = reading_message(casting.casting_id, 0, bad_row)
    worker = worker_factory(cfg).start()
    produce(cfg, ((casting.casting_id.encode(), m) for m in messages))
    live = reader_factory(cfg, cfg.topics.predictions)
    live.read_distinct_keys(1, 120, worker)
    assert live.json()[0]["gaps_filled"] == 1

    summary, _ = replay(cfg, tiny_checkpoint)
    assert summary.started_before_from == 0
    assert summary.castings_scored == 1
    assert summary.deadletters == {"out_of_limits": 1}
    replayed = reader_factory(cfg, f"{cfg.topics.predictions}.replay")
    replayed.read_until(lambda r: len(r) >= 1, timeout_s=30)
    assert replayed.json()[0]["defect_probability"] == live.json()[0]["defect_probability"]
    assert replayed.json()[0]["gaps_filled"] == 1


def test_replay_backtests_a_candidate_checkpoint_on_topics_of_its_own(service_config, reader_factory, tmp_path):
    import torch
    from click.testing import CliRunner

    from models.checkpoint import save_checkpoint
    from models.lstm_model import LSTMModelVariants, SteelDefectLSTM
    from stream_app.cli import cli
    from stream_app.config import write_config
    from tests.test_stream_app.harness import offline_probabilities

    cfg = service_config(topics={"partitions": 2})
    castings = make_castings(8, seed=61, prefix="CAND")
    produce_castings(cfg, castings)
    torch.manual_seed(21)
    model = SteelDefectLSTM(LSTMModelVariants.lightweight_lstm())
    model.fit_normalization([c.values for c in castings])
    candidate = tmp_path / "candidate.pt"
    channels = [{"name": c.name, "unit": c.unit} for c in cfg.validation.channels]
    version = save_checkpoint(candidate, model.eval(), metadata={"channels": channels})["version"]

    result = CliRunner().invoke(cli, ["replay", "--config", str(write_config(cfg, tmp_path / "c.yaml")),
                                      "--checkpoint", str(candidate), "--no-progress"])
    assert result.exit_code == 0, result.output
    topic = f"{cfg.topics.predictions}.replay-{version}"
    assert f"model {version} -> {topic}" in result.output
    replayed = reader_factory(cfg, topic)
    replayed.read_until(lambda r: len(r) >= len(castings), timeout_s=60)
    by_id = by_casting(replayed)
    assert set(by_id) == {c.casting_id for c in castings}
    reference = offline_probabilities(candidate, {c.casting_id: c.values for c in castings})
    for casting_id, prediction in by_id.items():
        assert prediction["model_version"] == version
        assert abs(prediction["defect_probability"] - reference[casting_id]) < 1e-6
