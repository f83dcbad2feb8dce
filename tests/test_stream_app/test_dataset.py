"""`stream-app dataset`: windows bit-identical to the worker's, the join with labels, and what it reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from models.dataset_file import read_labels, read_readings
from stream_app.cli import cli
from stream_app.config import write_config
from stream_app.tools.simulate import casting_messages, reading_message
from tests.test_stream_app.harness import make_castings, offline_probabilities, produce


def ffilled(values: np.ndarray, missing: set[int]) -> np.ndarray:
    """The reference gap filling, written out: a missing step takes the last known step (the first known for
    leading gaps)."""
    out = values.copy()
    known = [s for s in range(len(values)) if s not in missing]
    for step in sorted(missing):
        earlier = [s for s in known if s < step]
        out[step] = values[earlier[-1] if earlier else known[0]]
    return out


@pytest.mark.integration
def test_dataset_windows_are_the_workers_and_the_summary_adds_up(service_config, worker_factory, reader_factory,
                                                                 tiny_checkpoint, tmp_path):
    cfg = service_config(topics={"partitions": 2})
    castings = make_castings(9, seed=41, prefix="DS")
    gaps = {castings[0].casting_id: {0}, castings[1].casting_id: {10, 11, 57}}  # leading gap, inner gaps
    too_gappy = castings[2].casting_id  # 30% missing: dead-lettered by worker and builder alike
    messages = []
    for casting in castings:
        dropped = gaps.get(casting.casting_id, set())
        if casting.casting_id == too_gappy:
            dropped = set(range(0, len(casting.values), 3))
        for raw in casting_messages(casting.casting_id, casting.values, chunk_size=1):
            doc = json.loads(raw)
            if doc["type"] == "reading" and doc["step"] in dropped:
                if doc["step"] == 0 and casting.casting_id in gaps:  # rejected rather than absent: out_of_limits
                    raw = reading_message(casting.casting_id, 0, [99.0, *casting.values[0, 1:].tolist()])
                else:
                    continue
            messages.append((casting.casting_id.encode(), raw))
    produce(cfg, messages)

    worker = worker_factory(cfg).start()
    live = reader_factory(cfg, cfg.topics.predictions)
    live.read_distinct_keys(len(castings) - 1, 180, worker)
    worker.stop()
    predictions = {p["casting_id"]: p for p in live.json()}

    labelled = [c.casting_id for c in castings[:6]]  # with too_gappy; castings[6:] stay unlabelled
    labels_csv = tmp_path / "quality.csv"
    labels_csv.write_text("casting_id,label\n" + "".join(f"{cid},{i % 2}\n" for i, cid in enumerate(labelled))
                          + "NEVER-CAST-1,1\nNEVER-CAST-2,0\n")
    config_path = write_config(cfg, tmp_path / "stream.yaml")
    out = tmp_path / "history.parquet"
    result = CliRunner().invoke(cli, ["dataset", "--config", str(config_path), "--labels", str(labels_csv),
                                      "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    report = result.output
    for line in ("castings found                8", "labelled (written)          5", "unlabelled (left out)       3",
                 f"labelled but rejected         1  e.g. {too_gappy}", "labels with no casting        2",
                 "too_many_gaps               1", "out_of_limits               1"):
        assert line in report, report

    ids, windows = read_readings(out, [c.name for c in cfg.validation.channels])
    assert sorted(ids) == sorted(set(labelled) - {too_gappy})
    by_id = dict(zip(ids, windows, strict=True))
    for casting in [c for c in castings[:6] if c.casting_id != too_gappy]:
        expected = ffilled(casting.values, gaps.get(casting.casting_id, set()))
        np.testing.assert_array_equal(by_id[casting.casting_id], expected)  # bit for bit
    # ... and the worker scored exactly these windows
    reference = offline_probabilities(tiny_checkpoint, by_id)
    for casting_id in by_id:
        assert predictions[casting_id]["gaps_filled"] == len(gaps.get(casting_id, set()))
        assert abs(predictions[casting_id]["defect_probability"] - reference[casting_id]) < 1e-6
    written_labels = read_labels(tmp_path / "history.labels.csv")
    assert set(written_labels) == set(ids)


@pytest.mark.parametrize(
    ("labels_text", "expected"),
    [
        pytest.param("casting_id,label,grade\nC-1,1,A\n", "grade", id="unknown-column"),
        pytest.param("casting_id,label\nC-1,1\nC-1,0\n", "C-1", id="duplicate-id-different-labels"),
        pytest.param("casting_id,label\n,1\n", "row 1", id="empty-id"),
    ],
)
def test_a_bad_labels_file_is_a_clear_error(tmp_path, labels_text, expected):
    """Checked before the topic is read (no services needed)."""
    from stream_app.errors import StreamAppError

    labels = tmp_path / "labels.csv"
    labels.write_text(labels_text)
    result = CliRunner().invoke(cli, ["dataset", "--labels", str(labels), "--out", str(tmp_path / "d.parquet"),
                                      "--no-progress"])
    assert isinstance(result.exception, StreamAppError), result.output
    assert expected in str(result.exception) and str(labels) in str(result.exception)


def test_the_command_line_reports_an_error_without_traceback(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("casting_id,label,grade\nC-1,1,A\n")
    env = {**os.environ, "STREAM_APP__KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    done = subprocess.run([sys.executable, "-m", "stream_app.cli", "dataset", "--labels", str(labels), "--out",
                           str(tmp_path / "d.parquet"), "--no-progress"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "grade" in done.stderr and str(labels) in done.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(["--out", "d.txt"], "must end in .parquet or .csv", id="bad-suffix"),
        pytest.param(["--out", "no/such/folder/d.parquet"], "does not exist", id="no-folder"),
        pytest.param(["--out", "d.parquet", "--from", "yesterday"], "not an ISO-8601 time", id="bad-time"),
    ],
)
def test_bad_arguments_are_clear_errors(tmp_path, args, expected, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "labels.csv").write_text("casting_id,label\nC-1,1\n")
    result = CliRunner().invoke(cli, ["dataset", "--labels", "labels.csv", "--no-progress", *args])
    assert result.exit_code != 0
    assert expected in result.output or expected in str(result.exception)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({"STREAM_APP__REDIS__URL": "redis://127.0.0.1:1/0"}, "Redis does not answer", id="no-redis"),
        pytest.param({"STREAM_APP__KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1"}, "the broker does not answer",
                     id="no-broker", marks=pytest.mark.integration),  # Redis is asked first: the stack's
    ],
)
def test_unreachable_services_are_a_plain_error(tmp_path, env, expected, stream_config):
    """A bounded job stops at once with a message (the worker would wait instead). The other service is the
    test stack's, so only the named one is missing."""
    from stream_app.errors import StreamAppError

    (tmp_path / "labels.csv").write_text("casting_id,label\nC-1,1\n")
    config_path = write_config(stream_config, tmp_path / "stream.yaml")
    result = CliRunner(env=env).invoke(cli, ["dataset", "--config", str(config_path), "--labels",
                                             str(tmp_path / "labels.csv"), "--out", str(tmp_path / "d.parquet"),
                                             "--no-progress"])
    assert isinstance(result.exception, StreamAppError), result.output
    assert expected in str(result.exception)
