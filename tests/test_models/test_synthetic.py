"""models.synthetic: determinism, physical ranges, defects written into the signals, save/load."""

from __future__ import annotations

import numpy as np
import pytest

from models.synthetic import (
    CHANNELS,
    HARD_LIMITS,
    generate_castings,
    load_dataset,
    oracle_auc,
    save_dataset,
)


@pytest.fixture(scope="module")
def castings():
    return generate_castings(400, seed=3)


def test_deterministic_and_independent_of_n(castings):
    again = generate_castings(50, seed=3)
    for a, b in zip(castings.sequences[:50], again.sequences, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(castings.labels[:50], again.labels)
    other = generate_castings(5, seed=4)
    assert not np.array_equal(other.sequences[0][:10], castings.sequences[0][:10])


def test_shapes_lengths_and_hard_limits(castings):
    assert len(CHANNELS) == len(HARD_LIMITS)  # one limit row per channel
    for seq in castings.sequences:
        assert seq.dtype == np.float32 and seq.shape[1] == len(CHANNELS)
        assert 100 <= len(seq) <= 500
        assert np.all(seq >= HARD_LIMITS[:, 0]) and np.all(seq <= HARD_LIMITS[:, 1])
    means = np.concatenate(castings.sequences).mean(axis=0)
    np.testing.assert_allclose(means, [1.2, 1520, 150, 200, 25], rtol=0.1)


def test_labels_follow_a_learnable_latent_risk(castings):
    assert 0.08 < castings.labels.mean() < 0.25  # prevalence about 15%
    assert oracle_auc(castings) > 0.9
    assert np.all((castings.risk > 0) & (castings.risk < 1))


def test_small_n_is_cheap_and_empty_is_allowed():
    assert len(generate_castings(0, seed=1)) == 0
    assert len(generate_castings(3, seed=1)) == 3
    with pytest.raises(ValueError):
        generate_castings(-1)


def test_save_and_load_round_trip(castings, tmp_path):
    path = save_dataset(castings.subset(np.arange(20)), tmp_path / "d.npz")
    back = load_dataset(path)
    assert len(back) == 20 and back.seed == 3
    for a, b in zip(castings.sequences[:20], back.sequences, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(back.labels, castings.labels[:20])
    np.testing.assert_allclose(back.risk, castings.risk[:20])
    np.testing.assert_array_equal(back.spans, castings.spans[:20])


def test_planted_mechanisms_have_a_span_inside_the_casting(castings):
    planted = np.isfinite(castings.spans[:, 0])
    assert 0.05 < planted.mean() < 0.3
    assert np.all(castings.mechanisms[planted].max(axis=1) > 0)
    lengths = castings.lengths[planted]
    assert np.all(castings.spans[planted, 0] >= 0) and np.all(castings.spans[planted, 1] <= lengths)
