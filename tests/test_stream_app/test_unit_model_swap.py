"""A checkpoint must fit the configured channel set; the worker swaps models between batches (no services)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import save_checkpoint
from models.lstm_model import LSTMModelVariants, SteelDefectLSTM
from stream_app.config import ChannelLimits, load_config
from stream_app.errors import CheckpointMismatchError, ModelLoadError
from stream_app.runtime.metrics import Metrics
from stream_app.runtime.model_swap import ModelWatcher
from stream_app.service.ingest_stage import IngestStage
from stream_app.service.memory_window_store import MemoryWindowStore
from stream_app.service.messages import MessageParser
from stream_app.service.model_runner import Scorer, check_fits, load_scorer
from stream_app.service.records import SourceRecord
from stream_app.service.scoring_stage import ScoringStage
from stream_app.tools.simulate import casting_messages

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "configs" / "examples" / "slab-caster-12ch.yaml")
CFG = load_config(environ={})
CHANNELS = CFG.validation.channels
RECORDED = [{"name": c.name, "unit": c.unit} for c in CHANNELS]


def model_for(n_channels: int = 5, seed: int = 0, num_classes: int = 1) -> SteelDefectLSTM:
    torch.manual_seed(seed)
    config = LSTMModelVariants.lightweight_lstm()
    config["architecture"]["input_size"] = n_channels
    config["classifier"]["num_classes"] = num_classes
    return SteelDefectLSTM(config).eval()


def write(path: Path, *, n_channels: int = 5, seed: int = 0, channels: list | None = RECORDED,
          num_classes: int = 1, threshold: float = 0.5) -> Path:
    metadata: dict = {"threshold": threshold}
    if channels is not None:
        metadata["channels"] = channels
    save_checkpoint(path, model_for(n_channels, seed, num_classes), metadata=metadata)
    return path


def channel(name: str, unit: str = "u") -> ChannelLimits:
    return ChannelLimits(name=name, unit=unit, min=0.0, max=1.0)


# ----------------------------------------------------------------------------------------- the fit check


def test_a_checkpoint_of_the_configured_channels_fits(tmp_path):
    scorer = load_scorer(CFG.model.model_copy(update={"device": "cpu"}), CHANNELS, write(tmp_path / "m.pt"))
    assert scorer.n_channels == 5


@pytest.mark.parametrize(
    ("recorded", "expected"),
    [
        pytest.param(RECORDED[::-1], "was trained on the same channels in another order", id="reordered"),
        pytest.param([*RECORDED[:4], {"name": "stopper_position", "unit": "mm"}],
                     "was trained on other channels than the config names", id="renamed"),
        pytest.param([*RECORDED[:4], {**RECORDED[4], "unit": "degF"}], "the same channels in other units",
                     id="other-unit"),
    ],
)
def test_other_channels_are_refused_with_both_sets_listed(tmp_path, recorded, expected):
    path = write(tmp_path / "m.pt", channels=recorded)
    with pytest.raises(CheckpointMismatchError) as error:
        load_scorer(CFG.model, CHANNELS, path)
    message = str(error.value)
    assert expected in message
    assert "checkpoint (5, model input 5): [" + ", ".join(f"{c['name']} ({c['unit']})" for c in recorded) in message
    assert "validation.channels (5): [casting_speed (m/min), mold_temperature (degC)" in message


def test_old_checkpoint_forms_names_only_and_none(tmp_path):
    names_only = write(tmp_path / "a.pt", channels=[c["name"] for c in RECORDED])
    load_scorer(CFG.model, CHANNELS, names_only)  # unit None: only the names are compared
    load_scorer(CFG.model, CHANNELS, write(tmp_path / "b.pt", channels=None))  # no record: the count is checked
    with pytest.raises(CheckpointMismatchError, match="takes 12 channels; validation.channels names 5"):
        load_scorer(CFG.model, CHANNELS, write(tmp_path / "c.pt", n_channels=12, channels=None))


def test_other_input_size_is_refused_even_with_matching_names(tmp_path):
    path = write(tmp_path / "m.pt", n_channels=6)  # records the five names but takes six inputs
    with pytest.raises(CheckpointMismatchError, match="records 5 channels but its model takes 6 inputs"):
        load_scorer(CFG.model, CHANNELS, path)


def test_a_twelve_channel_config_takes_a_twelve_channel_checkpoint():
    cfg = load_config(EXAMPLE, environ={})
    channels = cfg.validation.channels
    assert len(channels) == 12
    scorer = Scorer(model_for(12), "v", torch.device("cpu"),
                    metadata={"channels": [{"name": c.name, "unit": c.unit} for c in channels]})
    check_fits(scorer, channels)
    with pytest.raises(CheckpointMismatchError, match="other channels"):
        check_fits(scorer, [*channels[:11], channel("spare")])


def test_a_multi_class_checkpoint_is_refused_clearly(tmp_path):
    path = write(tmp_path / "m.pt", num_classes=3)
    with pytest.raises(CheckpointMismatchError, match="3-class model; the service publishes one defect probability"):
        load_scorer(CFG.model, CHANNELS, path)


# ----------------------------------------------------------------------------------------- swapping


def readings_of(store: MemoryWindowStore, ids: list[str], n_steps: int = 120) -> list:
    """Ingest `ids` (random in-limits values) through the ingest stage; returns the scoring requests."""
    rng = np.random.default_rng(0)
    low = np.array([c.min for c in CHANNELS])
    high = np.array([c.max for c in CHANNELS])
    records = []
    for casting_id in ids:
        values = low + (high - low) * rng.uniform(0.2, 0.8, (n_steps, len(CHANNELS)))
        for offset, message in enumerate(casting_messages(casting_id, values, chunk_size=50)):
            records.append(SourceRecord("sensors", 0, len(records) + offset, casting_id.encode(), message))
    outcome = asyncio.run(IngestStage(MessageParser(CFG.validation), store).process(records, 0.0))
    return outcome.requests


def stage_with(scorer: Scorer, store: MemoryWindowStore, executor=None) -> ScoringStage:
    return ScoringStage(store, scorer, CFG.window, 0.5, 64, executor)


def versions(outcome) -> set[str]:
    import json

    return {json.loads(payload)["model_version"] for _, payload in outcome.predictions}


class GatedScorer(Scorer):
    """Blocks its forward until released, to swap while a batch is inside it."""

    def __init__(self, model, version) -> None:
        super().__init__(model, version, torch.device("cpu"))
        self.entered, self.release = threading.Event(), threading.Event()

    def score(self, windows):
        self.entered.set()
        assert self.release.wait(30)
        return super().score(windows)


def test_a_batch_in_its_forward_keeps_its_model_the_next_batch_gets_the_new_one():
    store = MemoryWindowStore()
    old = GatedScorer(model_for(seed=1), "old")
    new = Scorer(model_for(seed=2), "new", torch.device("cpu"))
    stage = stage_with(old, store)
    first, second = readings_of(store, ["A-1", "A-2"]), readings_of(store, ["B-1"])

    async def run():
        in_flight = asyncio.ensure_future(stage.process(first))
        await asyncio.to_thread(old.entered.wait, 30)
        stage.swap(new, 0.7)  # while batch one is in the old model's forward
        old.release.set()
        return await in_flight, await stage.process(second)

    before, after = asyncio.run(run())
    assert versions(before) == {"old"} and len(before.predictions) == 2
    assert versions(after) == {"new"}
    assert stage.threshold == 0.7


def test_swap_refuses_a_model_of_another_width():
    stage = stage_with(Scorer(model_for(), "a", torch.device("cpu")), MemoryWindowStore())
    with pytest.raises(ValueError, match="takes 6 channels"):
        stage.swap(Scorer(model_for(6), "b", torch.device("cpu")), 0.5)


def test_a_redelivered_casting_gets_its_stored_bytes_after_a_swap():
    store = MemoryWindowStore()
    stage = stage_with(Scorer(model_for(seed=1), "old", torch.device("cpu")), store)
    requests = readings_of(store, ["C-1"])
    first = asyncio.run(stage.process(requests))
    stage.swap(Scorer(model_for(seed=2), "new", torch.device("cpu")), 0.5)
    again = asyncio.run(stage.process(requests))  # re-delivered before its window was freed
    assert again.predictions == first.predictions and again.stats.resent == 1


# ----------------------------------------------------------------------------------------- the watcher


def watcher_on(tmp_path: Path) -> tuple[ModelWatcher, ScoringStage, Metrics, Path]:
    path = write(tmp_path / "model.pt", seed=1, threshold=0.4)
    cfg = CFG.model_copy(update={"model": CFG.model.model_copy(update={"checkpoint": path, "device": "cpu"})})
    scorer = load_scorer(cfg.model, cfg.validation.channels)
    stage = stage_with(scorer, MemoryWindowStore())
    metrics = Metrics()
    return ModelWatcher(cfg, stage, metrics), stage, metrics, path


def swaps(metrics: Metrics, outcome: str) -> float:
    return metrics.registry.get_sample_value("casting_model_swaps_total", {"outcome": outcome})


def serving(metrics: Metrics) -> list[str]:
    return [s.labels["version"] for s in metrics.model_info.collect()[0].samples if s.value == 1]


def test_watcher_swaps_in_a_new_file_and_reports_it(tmp_path):
    watcher, stage, metrics, path = watcher_on(tmp_path)
    old = stage.scorer.version
    assert asyncio.run(watcher.check()) == "unchanged"
    write(path, seed=2, threshold=0.6)
    assert asyncio.run(watcher.check()) == "swapped"
    assert stage.scorer.version != old and stage.threshold == pytest.approx(0.6)
    assert swaps(metrics, "swapped") == 1 and serving(metrics) == [stage.scorer.version]
    assert asyncio.run(watcher.check()) == "unchanged"


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda p: p.write_bytes(b"not a checkpoint at all"), id="corrupt"),
        pytest.param(lambda p: p.write_bytes(p.read_bytes()[:2000]), id="truncated"),
        pytest.param(lambda p: write(p, seed=3, channels=RECORDED[::-1]), id="other-channel-order"),
        pytest.param(lambda p: write(p, seed=3, n_channels=7, channels=None), id="other-input-size"),
        pytest.param(lambda p: write(p, seed=3, num_classes=3), id="multi-class"),
    ],
)
def test_a_bad_file_is_refused_and_the_old_model_keeps_serving(tmp_path, bad, caplog):
    watcher, stage, metrics, path = watcher_on(tmp_path)
    old = stage.scorer
    bad(path)
    assert asyncio.run(watcher.check()) == "refused"
    assert stage.scorer is old and serving(metrics) == [old.version]
    assert swaps(metrics, "refused") == 1 and swaps(metrics, "swapped") == 0
    assert any("refused new checkpoint" in r.getMessage() for r in caplog.records)
    assert asyncio.run(watcher.check()) == "unchanged"  # tried again only when the file changes again
    write(path, seed=4)
    assert asyncio.run(watcher.check()) == "swapped"


def test_same_weights_rewritten_and_a_missing_file_change_nothing(tmp_path):
    watcher, stage, metrics, path = watcher_on(tmp_path)
    old = stage.scorer
    write(path, seed=1, threshold=0.4)  # same weights, new file
    assert asyncio.run(watcher.check()) == "same-version"
    path.unlink()
    assert asyncio.run(watcher.check()) == "missing"
    assert stage.scorer is old and swaps(metrics, "swapped") == 0


def test_load_errors_are_model_load_errors():
    assert issubclass(CheckpointMismatchError, ModelLoadError)


# ----------------------------------------------------------------------------------------- start-up refusals


def test_worker_and_replay_refuse_to_start_on_a_checkpoint_of_other_channels(tmp_path):
    """The example 12-channel config with the default 5-channel checkpoint: both refuse before connecting
    anywhere, and the error lists both channel sets (the real command line: exit 2, no traceback)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "STREAM_APP__KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1",
           "STREAM_APP__MODEL__CHECKPOINT": str(ROOT / "checkpoints" / "default" / "model.pt")}
    for command in (["worker"], ["replay", "--no-progress"]):
        done = subprocess.run([sys.executable, "-m", "stream_app.cli", *command, "--config",
                               EXAMPLE], capture_output=True, text=True, env=env,
                              timeout=120)
        assert done.returncode == 2, (command, done.stderr)
        assert "Traceback" not in done.stderr
        assert "checkpoint (5, model input 5): [casting_speed (m/min)" in done.stderr
        assert "validation.channels (12): [casting_speed (m/min), mold_tc_upper_ne (degC)" in done.stderr


def test_a_file_replaced_while_the_worker_started_is_still_swapped_in(tmp_path):
    from stream_app.runtime.model_swap import file_signature

    path = write(tmp_path / "model.pt", seed=1)
    cfg = CFG.model_copy(update={"model": CFG.model.model_copy(update={"checkpoint": path, "device": "cpu"})})
    before = file_signature(path)  # what run_worker takes before loading
    scorer = load_scorer(cfg.model, cfg.validation.channels)
    write(path, seed=2)  # replaced after the load, before the watcher exists
    stage = stage_with(scorer, MemoryWindowStore())
    watcher = ModelWatcher(cfg, stage, Metrics(), signature=before)
    assert asyncio.run(watcher.check()) == "swapped"


def test_an_unforeseen_load_failure_is_refused_too(tmp_path):
    watcher, stage, metrics, path = watcher_on(tmp_path)
    old = stage.scorer

    def broken_loader():
        raise TypeError("something no check foresaw")

    watcher.load = broken_loader
    write(path, seed=5)
    assert asyncio.run(watcher.check()) == "refused"
    assert stage.scorer is old and swaps(metrics, "refused") == 1
