"""The whole loop on a plant of its own (the 12-channel example line), with real Kafka and Redis:

simulate the line -> sensor topic -> `stream-app dataset` with the quality labels -> `stream-app train` (small)
-> `stream-app evaluate` (candidate beside the serving model) -> the new checkpoint swapped into the running
worker -> its predictions carry the new version and equal an offline forward of the same windows.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from models.checkpoint import load_checkpoint, save_checkpoint
from models.lstm_model import LSTMModelVariants, SteelDefectLSTM
from models.synthetic import SignalChannel, generate_castings
from stream_app.cli import cli
from stream_app.config import load_config, write_config
from stream_app.tools.simulate import load_castings, run_simulation
from tests.test_stream_app.harness import create_topics, offline_probabilities

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "examples" / "slab-caster-12ch.yaml"
HISTORY, FRESH = 120, 10


def first_checkpoint(path: Path, cfg) -> str:
    """The model serving before the plant trains its own: untrained, but on the plant's channels."""
    torch.manual_seed(3)
    config = LSTMModelVariants.lightweight_lstm()
    config["architecture"]["input_size"] = len(cfg.validation.channels)
    model = SteelDefectLSTM(config)
    channels = [SignalChannel(c.name, c.min, c.max) for c in cfg.validation.channels]
    model.fit_normalization(generate_castings(8, seed=99, channels=channels).sequences)
    channel_record = [{"name": c.name, "unit": c.unit} for c in cfg.validation.channels]
    metadata = {"channels": channel_record, "class_names": ["0", "1"], "threshold": 0.5}
    return save_checkpoint(path, model.eval(), metadata=metadata)["version"]


def serving_version(worker) -> str | None:
    found = re.search(r'^casting_model_info\{version="([^"]+)"\} 1\.0$', worker.metrics_text(), re.MULTILINE)
    return found.group(1) if found else None


def swaps(worker, outcome: str) -> float:
    found = re.search(rf'^casting_model_swaps_total\{{outcome="{outcome}"\}} (\S+)$', worker.metrics_text(),
                      re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_simulate_dataset_train_evaluate_and_swap_on_a_twelve_channel_line(
    unique_name, worker_factory, reader_factory, tmp_path
):
    began = time.monotonic()
    app_id = unique_name("plant")
    live_path = tmp_path / "live" / "model.pt"
    cfg = load_config(EXAMPLE, environ=os.environ, app_id=app_id,
                      topics={"sensors": f"{app_id}.sensors", "predictions": f"{app_id}.predictions",
                              "deadletter": f"{app_id}.deadletter", "partitions": 2},
                      model={"checkpoint": str(live_path), "device": "cpu", "torch_threads": 1,
                             "watch_interval_s": 0.5})
    assert len(cfg.validation.channels) == 12
    create_topics(cfg)
    config_file = write_config(cfg, tmp_path / "plant.yaml")
    old_version = first_checkpoint(live_path, cfg)
    worker = worker_factory(cfg).start()

    # the line's history: castings on the sensor topic, quality labels from the plant's records
    history = load_castings(count=HISTORY, seed=12, prefix="HIST", channels=cfg.validation.channels)
    run_simulation(cfg, history, strands=4, chunk_size=25, progress=False)
    truth = generate_castings(HISTORY, seed=12).labels  # the same castings' labels (labels do not depend on channels)
    labels_csv = tmp_path / "quality.csv"
    labels_csv.write_text("casting_id,label\n" + "".join(f"{c.casting_id},{int(y)}\n" for c, y in zip(history, truth,
                                                                                                     strict=True))
                          + "HIST-NEVER,1\n")
    predictions = reader_factory(cfg, cfg.topics.predictions)
    runner = CliRunner()

    data = tmp_path / "history.parquet"
    result = runner.invoke(cli, ["dataset", "--config", str(config_file), "--labels", str(labels_csv),
                                 "--out", str(data), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert f"castings found                {HISTORY}" in result.output
    assert "labels with no casting        1" in result.output

    candidate_dir = tmp_path / "candidate"
    result = runner.invoke(cli, ["train", "--data", str(data), "--labels", str(tmp_path / "history.labels.csv"),
                                 "--stream-config", str(config_file), "--output-dir", str(candidate_dir),
                                 "--epochs", "2", "--search-budget-s", "0", "--no-progress"])
    assert result.exit_code == 0, result.output
    candidate = candidate_dir / "model.pt"
    _, info = load_checkpoint(candidate)
    new_version = info["version"]
    assert [c["name"] for c in info["metadata"]["channels"]] == [c.name for c in cfg.validation.channels]

    result = runner.invoke(cli, ["evaluate", "--checkpoint", str(live_path), "--candidate", str(candidate),
                                 "--data", str(data), "--labels", str(tmp_path / "history.labels.csv"),
                                 "--stream-config", str(config_file), "--output", str(tmp_path / "eval.json"),
                                 "--plot", str(tmp_path / "eval.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "eval.json").is_file() and (tmp_path / "eval.png").is_file()

    # every historical casting was scored live by the first model
    predictions.read_distinct_keys(HISTORY, 240, worker)
    assert {p["model_version"] for p in predictions.json()} == {old_version}
    assert serving_version(worker) == old_version

    # swap: the trained checkpoint replaces the file at model.checkpoint (written beside it, renamed over)
    staging = live_path.with_name("model.pt.new")
    shutil.copyfile(candidate, staging)
    staging.replace(live_path)
    worker.wait_for(lambda: serving_version(worker) == new_version, "the swap to the trained model", 120)
    assert swaps(worker, "swapped") == 1

    # a checkpoint of other channels is refused; the trained model keeps serving
    wrong = tmp_path / "default-five.pt"
    shutil.copyfile(Path(__file__).resolve().parents[2] / "checkpoints" / "default" / "model.pt", wrong)
    wrong.replace(live_path)
    worker.wait_for(lambda: swaps(worker, "refused") == 1, "the refusal of a 5-channel checkpoint", 120)
    assert "refused new checkpoint" in worker.log_tail(20_000)

    fresh = load_castings(count=FRESH, seed=13, prefix="LIVE", channels=cfg.validation.channels)
    run_simulation(cfg, fresh, strands=3, chunk_size=25, progress=False)
    predictions.read_distinct_keys(HISTORY + FRESH, 240, worker)
    by_id: dict[str, dict] = {}
    for p in predictions.json():
        assert by_id.setdefault(p["casting_id"], p) == p  # a duplicate would be identical: none lost, none changed
    assert set(by_id) == {c.casting_id for c in history} | {c.casting_id for c in fresh}
    assert all(by_id[c.casting_id]["model_version"] == new_version for c in fresh)
    assert serving_version(worker) == new_version

    reference = offline_probabilities(candidate, {c.casting_id: c.values for c in fresh})
    for casting in fresh:
        assert abs(by_id[casting.casting_id]["defect_probability"] - reference[casting.casting_id]) < 1e-6
    assert worker.alive()
    print(f"\nbring-your-own-plant loop: {time.monotonic() - began:.1f}s")
    assert np.isfinite(list(reference.values())).all()
