"""prediction_payload: the `casting.predictions` contract of DESIGN.md (no services)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stream_app.service.records import ScoringRequest
from stream_app.service.scoring_stage import prediction_payload

#: DESIGN.md, "Topics and messages": the fields of casting.predictions
CONTRACT_FIELDS = {
    "casting_id", "defect_probability", "predicted_defect", "threshold", "n_steps", "attention",
    "model_version", "gaps_filled", "scored_at", "latency_ms", "batch_size",
}
REQUEST = ScoringRequest("C-42", 4, 1_700_000_000.0, {"topic": "casting.sensors", "partition": 1, "offset": 9})
ATTENTION = np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32)


def payload(probability=0.73, attention=ATTENTION, threshold=0.5, now=1_700_000_000.25, **kwargs) -> dict:
    fields = {"model_version": "v1-abc", "gaps_filled": 2, "batch_size": 16, **kwargs}
    raw = prediction_payload(REQUEST, probability, attention, threshold=threshold, now=now, **fields)
    assert isinstance(raw, bytes)
    return json.loads(raw)


def test_fields_match_the_design_contract():
    doc = payload()
    assert set(doc) == CONTRACT_FIELDS
    assert doc["casting_id"] == "C-42"
    assert doc["defect_probability"] == pytest.approx(0.73)
    assert doc["predicted_defect"] is True
    assert doc["threshold"] == 0.5
    assert doc["n_steps"] == 4
    assert doc["model_version"] == "v1-abc"
    assert doc["gaps_filled"] == 2
    assert doc["batch_size"] == 16
    assert doc["scored_at"] == "2023-11-14T22:13:20.250+00:00"
    assert doc["latency_ms"] == pytest.approx(250.0)


def test_attention_has_one_weight_per_step_summing_to_one():
    doc = payload()
    assert len(doc["attention"]) == doc["n_steps"]
    assert all(isinstance(w, float) for w in doc["attention"])
    assert sum(doc["attention"]) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(doc["attention"], ATTENTION, atol=1e-7)


def test_long_attention_still_sums_to_one():
    rng = np.random.default_rng(0)
    weights = rng.random(500).astype(np.float32)
    weights /= weights.sum()
    request = ScoringRequest("C-1", 500, 0.0, {})
    doc = json.loads(prediction_payload(request, 0.2, weights, threshold=0.5, model_version="v", gaps_filled=0,
                                        batch_size=1, now=1.0))
    assert len(doc["attention"]) == 500
    assert sum(doc["attention"]) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize(
    ("probability", "threshold", "predicted"),
    [
        pytest.param(0.5, 0.5, True, id="at-threshold"),
        pytest.param(0.4999, 0.5, False, id="just-below"),
        pytest.param(0.0, 0.5, False, id="zero"),
        pytest.param(1.0, 0.5, True, id="one"),
        pytest.param(0.3, 0.25, True, id="custom-threshold-above"),
        pytest.param(0.2, 0.25, False, id="custom-threshold-below"),
    ],
)
def test_predicted_defect_uses_the_threshold(probability, threshold, predicted):
    doc = payload(probability=probability, threshold=threshold)
    assert doc["predicted_defect"] is predicted
    assert doc["threshold"] == threshold


def test_predicted_defect_agrees_with_published_probability():
    doc = payload(probability=0.49999999, threshold=0.5)
    assert doc["predicted_defect"] is (doc["defect_probability"] >= doc["threshold"])
