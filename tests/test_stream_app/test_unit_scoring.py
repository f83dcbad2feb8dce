"""Scorer: batched, length-sorted scoring equals scoring each window alone; checkpoint loading errors."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from models.checkpoint import save_checkpoint
from models.lstm_model import LSTMModelVariants, SteelDefectLSTM
from models.synthetic import generate_castings
from stream_app.errors import ModelLoadError
from stream_app.service.model_runner import Score, Scorer, choose_device

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def castings():
    return generate_castings(8, seed=1).sequences


@pytest.fixture(scope="module")
def model(castings) -> SteelDefectLSTM:
    torch.manual_seed(0)
    model = SteelDefectLSTM(LSTMModelVariants.lightweight_lstm())
    model.fit_normalization(castings)
    return model.eval()


@pytest.fixture(scope="module")
def scorer(model) -> Scorer:
    return Scorer(model, "test-version", CPU)


def windows_of(castings, lengths) -> list[np.ndarray]:
    """Window i: the first lengths[i] steps of casting i (mod 8), so equal lengths still differ in content."""
    out = []
    for i, n in enumerate(lengths):
        source = castings[i % len(castings)]
        assert len(source) >= n
        out.append(np.ascontiguousarray(source[:n], dtype=np.float32))
    return out


def alone(model: SteelDefectLSTM, window: np.ndarray) -> tuple[float, np.ndarray]:
    with torch.inference_mode():
        logit = model(torch.from_numpy(window[None]))
        attention = model.get_attention_weights()[0].numpy().copy()
    return float(torch.sigmoid(logit)[0]), attention


@pytest.mark.parametrize(
    "lengths",
    [
        pytest.param([106], id="one"),
        pytest.param([60, 60, 60], id="equal-lengths"),
        pytest.param([5, 106, 37], id="short-long-mid"),
        pytest.param([106, 1, 80, 2, 106, 40], id="mixed-with-ties"),
        pytest.param([1, 2, 3, 4, 5, 6, 7, 8, 100], id="ascending"),
    ],
)
def test_batched_scores_equal_each_window_alone(model, scorer, castings, lengths):
    windows = windows_of(castings, lengths)
    scores = scorer.score(windows)
    assert len(scores) == len(windows)
    for window, score in zip(windows, scores, strict=True):
        assert isinstance(score, Score) and isinstance(score.probability, float)
        probability, attention = alone(model, window)
        assert score.probability == pytest.approx(probability, abs=1e-5)
        assert score.attention.dtype == np.float32
        assert score.attention.shape == (len(window),)
        np.testing.assert_allclose(score.attention, attention, atol=1e-5)
        assert float(score.attention.sum(dtype=np.float64)) == pytest.approx(1.0, abs=1e-5)
        assert (score.attention >= 0).all()


def test_results_come_back_in_input_order(scorer, castings):
    lengths = [30, 90, 10, 60, 20]
    windows = windows_of(castings, lengths)
    forward = scorer.score(windows)
    backward = scorer.score(windows[::-1])[::-1]
    assert [len(s.attention) for s in forward] == lengths
    for a, b in zip(forward, backward, strict=True):
        assert a.probability == pytest.approx(b.probability, abs=1e-6)
        np.testing.assert_allclose(a.attention, b.attention, atol=1e-6)
    assert len({round(s.probability, 6) for s in forward}) > 1  # distinct windows, distinct scores


def test_same_window_in_different_batches_scores_the_same(scorer, castings):
    window = windows_of(castings, [50])[0]
    others = windows_of(castings, [7, 106, 3, 80])
    first = scorer.score([window])[0]
    mixed = scorer.score([others[0], others[1], window, others[2], others[3]])[2]
    assert mixed.probability == pytest.approx(first.probability, abs=1e-5)
    np.testing.assert_allclose(mixed.attention, first.attention, atol=1e-5)


def test_concurrent_scoring_equals_sequential_scoring(scorer, castings):
    """One Scorer serving 4 threads at once, each with its own batch mix, gives bit for bit what scoring
    the same batches one after another gives: probabilities and attention (the model keeps no state)."""
    mixes = [[106], [60, 60, 60], [5, 106, 37], [106, 1, 80, 2, 106, 40], [1, 2, 3, 4, 5, 6, 7, 8, 100],
             [30, 90, 10, 60, 20], [7], [100, 3, 55, 55]]  # fmt: skip
    batches = [windows_of(castings[k:] + castings[:k], lengths) for k, lengths in enumerate(mixes)]  # rotated
    sequential = [scorer.score(windows) for windows in batches]
    jobs = [k for _ in range(20) for k in range(len(batches))]  # every mix 20 times, spread over the threads
    start, local, threads = threading.Barrier(4), threading.local(), set()

    def run(k: int) -> tuple[int, list[Score]]:
        if not getattr(local, "started", False):  # each thread's first job: the 4 threads begin together
            local.started = True
            threads.add(threading.get_ident())
            start.wait(timeout=30)
        return k, scorer.score(batches[k])

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, jobs))
    assert len(threads) == 4 and sorted(k for k, _ in results) == sorted(jobs)
    for k, scores in results:
        assert len(scores) == len(sequential[k])
        for got, want in zip(scores, sequential[k], strict=True):
            assert got.probability == want.probability
            np.testing.assert_array_equal(got.attention, want.attention)


def test_scorer_uses_the_stateless_call_only(castings):
    """Scoring leaves nothing on the model: get_attention_weights (the original API's record of the last
    forward) still has nothing to return."""
    model = SteelDefectLSTM(LSTMModelVariants.lightweight_lstm())
    Scorer(model, "v", CPU).score(windows_of(castings, [40, 9]))
    with pytest.raises(RuntimeError, match="no forward"):
        model.get_attention_weights()


def test_attention_of_a_single_step_is_one(scorer, castings):
    (score,) = scorer.score(windows_of(castings, [1]))
    np.testing.assert_array_equal(score.attention, np.float32([1.0]))


def test_empty_batch(scorer):
    assert scorer.score([]) == []


def test_scorer_puts_the_model_in_eval_mode_in_its_precision():
    """What the Scorer does to the model it is given: a model in training mode (dropout active) is switched
    to eval mode and converted to the scoring dtype; the channel count is the model's, not a constant."""
    config = LSTMModelVariants.lightweight_lstm()
    config["architecture"]["input_size"] = 3
    model = SteelDefectLSTM(config)
    assert model.training
    scorer = Scorer(model, "v", CPU, torch.float64)
    assert not scorer.model.training
    assert {p.dtype for p in scorer.model.parameters()} == {torch.float64}
    assert scorer.n_channels == 3


def test_from_checkpoint_round_trip(tmp_path, model, scorer, castings):
    path = tmp_path / "ckpt" / "model.pt"
    info = save_checkpoint(path, model, metadata={"purpose": "unit test"})
    loaded = Scorer.from_checkpoint(path, "cpu")
    assert loaded.version == info["version"]
    assert loaded.version.startswith("v1-")
    windows = windows_of(castings, [106, 20, 64])
    for a, b in zip(loaded.score(windows), scorer.score(windows), strict=True):
        assert a.probability == pytest.approx(b.probability, abs=1e-6)
        np.testing.assert_allclose(a.attention, b.attention, atol=1e-6)


def test_from_checkpoint_missing_path(tmp_path):
    path = tmp_path / "nowhere" / "model.pt"
    with pytest.raises(ModelLoadError) as caught:
        Scorer.from_checkpoint(path, "cpu")
    message = str(caught.value)
    assert str(path) in message and "not found" in message
    assert "stream-app train" in message and "STREAM_APP__MODEL__CHECKPOINT" in message


def test_from_checkpoint_not_a_checkpoint(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(ModelLoadError, match="cannot load model checkpoint") as caught:
        Scorer.from_checkpoint(path, "cpu")
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("content", [b"not a checkpoint at all", b""], ids=["garbage", "empty"])
def test_from_checkpoint_unreadable_file_is_a_model_load_error(tmp_path, content):
    path = tmp_path / "broken.pt"
    path.write_bytes(content)
    try:
        Scorer.from_checkpoint(path, "cpu")
    except ModelLoadError as exc:
        assert str(path) in str(exc)
    else:
        pytest.fail("no error for an unreadable checkpoint")


def test_multiclass_checkpoint_is_refused(tmp_path, castings):
    config = LSTMModelVariants.lightweight_lstm()
    config["classifier"]["num_classes"] = 3
    model = SteelDefectLSTM(config)
    path = tmp_path / "multiclass.pt"
    save_checkpoint(path, model)
    with pytest.raises(ModelLoadError, match="num_classes=1"):
        Scorer.from_checkpoint(path, "cpu")
    with pytest.raises(ModelLoadError, match="num_classes=1"):
        Scorer(model, "v", CPU)


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_choose_device_without_cuda(no_cuda):
    with pytest.raises(ModelLoadError, match="'cuda' but no CUDA device"):
        choose_device("cuda")
    assert choose_device("auto") == CPU
    assert choose_device("cpu") == CPU


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour on a machine without CUDA")
def test_choose_device_cuda_on_this_machine():
    with pytest.raises(ModelLoadError):
        choose_device("cuda")


def test_from_checkpoint_cuda_without_cuda(tmp_path, model, no_cuda):
    path = tmp_path / "model.pt"
    save_checkpoint(path, model)
    with pytest.raises(ModelLoadError, match="CUDA"):
        Scorer.from_checkpoint(path, "cuda")


def test_threshold_comes_from_the_checkpoint_unless_configured(tmp_path):
    import torch

    from models.checkpoint import save_checkpoint
    from models.lstm_model import LSTMModelVariants, SteelDefectLSTM
    from stream_app.service.model_runner import Scorer

    model = SteelDefectLSTM(LSTMModelVariants.lightweight_lstm())
    with_threshold, without = tmp_path / "t.pt", tmp_path / "n.pt"
    save_checkpoint(with_threshold, model, metadata={"threshold": 0.87})
    save_checkpoint(without, model, metadata={})
    assert Scorer.from_checkpoint(with_threshold, "cpu").threshold("checkpoint") == pytest.approx(0.87)
    assert Scorer.from_checkpoint(with_threshold, "cpu").threshold(0.3) == 0.3
    assert Scorer.from_checkpoint(without, "cpu").threshold("checkpoint") == 0.5
    assert torch.get_default_dtype() == torch.float32
