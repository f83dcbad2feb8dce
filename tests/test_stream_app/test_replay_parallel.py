"""A replay in several processes: the partitions are split, the results are those of one process."""

from __future__ import annotations

from collections import Counter

import pytest
from aiokafka import TopicPartition

from stream_app.runtime.replay import ReplayPlan, ReplaySummary
from stream_app.runtime.replay_parallel import merge, resolve_processes, split_plan


def plan_of(sizes: list[int]) -> ReplayPlan:
    tps = [TopicPartition("t", p) for p in range(len(sizes))]
    return ReplayPlan({tp: 10 for tp in tps}, {tp: 10 + n for tp, n in zip(tps, sizes, strict=True)},
                      {tp: 5 for tp in tps})


def test_split_plan_gives_disjoint_shares_of_about_equal_records_and_skips_empty_partitions():
    plan = plan_of([100, 10, 0, 60, 50, 30])
    shares = split_plan(plan, 2)
    assert len(shares) == 2
    parts = [set(s.start) for s in shares]
    assert parts[0].isdisjoint(parts[1])
    assert parts[0] | parts[1] == {tp for tp in plan.start if tp.partition != 2}
    assert sorted(s.total for s in shares) == [120, 130]  # largest first to the lighter share: 100+30, 60+50+10
    for share in shares:  # each share keeps the offsets the whole plan fixed
        for tp in share.start:
            assert (share.start[tp], share.stop[tp], share.lookback[tp]) == (plan.start[tp], plan.stop[tp], 5)
    assert len(split_plan(plan_of([7, 0]), 4)) == 1  # no more shares than partitions with records
    assert split_plan(plan_of([0, 0]), 2) == []


def test_merge_adds_the_counts_and_keeps_the_wall_time():
    a = ReplaySummary(records=10, readings=100, castings_scored=3, deadletters=Counter(schema=1),
                      started_before_from=1, open_at_stop=0, seconds=4.0)
    b = ReplaySummary(records=5, readings=50, castings_scored=2, deadletters=Counter(schema=2, range=1),
                      started_before_from=0, open_at_stop=1, seconds=3.0)
    merged = merge([a, b], seconds=4.5)
    assert (merged.records, merged.readings, merged.castings_scored) == (15, 150, 5)
    assert merged.deadletters == Counter(schema=3, range=1)
    assert (merged.started_before_from, merged.open_at_stop, merged.seconds) == (1, 1, 4.5)


def test_processes_auto_is_one_per_core(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert resolve_processes("auto") == 2
    assert resolve_processes("3") == 3


@pytest.mark.integration
def test_two_processes_score_what_one_process_scores(service_config, reader_factory, tmp_path):
    from click.testing import CliRunner

    from stream_app.cli import cli
    from stream_app.config import write_config
    from stream_app.runtime.connections import create_redis_sync
    from tests.test_stream_app.harness import make_castings, produce, produce_castings

    cfg = service_config(topics={"partitions": 4})
    castings = make_castings(24, seed=83, prefix="PR")
    produce_castings(cfg, castings)
    produce(cfg, [(b"PR-BAD", b"{not json"), (b"PR-BAD", b'{"casting_id": "PR-BAD"}')])
    config = str(write_config(cfg, tmp_path / "c.yaml"))

    outputs = {}
    for processes in ("1", "2", "6"):  # 6 processes for 4 partitions: two get no share and end at once
        topic = f"{cfg.topics.predictions}.replay-{processes}"
        result = CliRunner().invoke(cli, [
            "replay", "--config", config, "--no-progress", "--processes", processes,
            "--app-id", f"{cfg.app_id}-r{processes}", "--output-topic", topic,
            "--deadletter-topic", f"{cfg.topics.deadletter}.replay-{processes}"])
        assert result.exit_code == 0, result.output
        reader = reader_factory(cfg, topic)
        reader.read_until(lambda r: len(r) >= len(castings), timeout_s=60)
        reader.poll(1000)  # nothing more than one prediction per casting arrives
        outputs[processes] = (result.output, {p["casting_id"]: p for p in reader.json()}, len(reader.records))

    (one_text, one, one_count), (two_text, two, two_count), (six_text, six, six_count) = outputs.values()
    assert one_count == two_count == six_count == len(castings)
    assert set(two) == set(one) == set(six) == {c.casting_id for c in castings}
    for casting_id, prediction in one.items():
        assert two[casting_id]["defect_probability"] == prediction["defect_probability"], casting_id
        assert six[casting_id]["defect_probability"] == prediction["defect_probability"], casting_id
    # the merged summary says what the single process said (the duration aside)
    def counts(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith(("duration", "readings", "model"))]

    assert counts(two_text) == counts(one_text) == counts(six_text)
    assert f"castings scored       {len(castings)}" in two_text
    assert "dead letters          2" in two_text
    redis = create_redis_sync(cfg.redis)
    try:  # every process removed its own keys
        assert not list(redis.scan_iter(f"csd:{cfg.app_id}-r2*"))
    finally:
        redis.close()
