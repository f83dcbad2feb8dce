"""assemble_window: buffered rows -> the (n_steps, channels) window, gap filling and rejections (no services)."""

from __future__ import annotations

import numpy as np
import pytest

from stream_app.config import WindowConfig
from stream_app.errors import RejectedInput
from stream_app.service.windows import ROW_DTYPE, assemble_window, pack_row

C = 2  # channels; small so expected windows are easy to read


def rows_of(values: dict[int, list[float]]) -> dict[int, bytes]:
    return {step: pack_row(np.asarray(row, dtype=np.float32)) for step, row in values.items()}


def ramp(steps) -> dict[int, list[float]]:
    """Row of step s is [s, 10 s]: linear in the step, so linear filling is exact."""
    return {s: [float(s), 10.0 * s] for s in steps}


def cfg(gap_fill: str = "ffill", max_gap_share: float = 0.5) -> WindowConfig:
    return WindowConfig(gap_fill=gap_fill, max_gap_share=max_gap_share)


def test_pack_row_is_little_endian_float32():
    packed = pack_row(np.array([1.5, -2.0], dtype=np.float64))
    assert packed == np.array([1.5, -2.0], dtype="<f4").tobytes()
    assert ROW_DTYPE.itemsize * C == len(packed)


@pytest.mark.parametrize("gap_fill", ["ffill", "linear"])
def test_complete_window_is_returned_as_is(gap_fill):
    window, gaps = assemble_window(rows_of(ramp(range(6))), 6, C, cfg(gap_fill))
    assert gaps == 0
    assert window.dtype == np.float32 and window.shape == (6, C)
    np.testing.assert_array_equal(window, np.array([[s, 10 * s] for s in range(6)], dtype=np.float32))


@pytest.mark.parametrize("gap_fill", ["ffill", "linear"])
@pytest.mark.parametrize("missing", [False, True], ids=["complete", "with-gap"])
def test_steps_dict_order_does_not_matter(gap_fill, missing):
    steps = [0, 1, 2, 4, 5] if missing else list(range(6))
    in_order = rows_of(ramp(steps))
    shuffled = dict(reversed(list(in_order.items())))
    shuffled = {k: shuffled[k] for k in (5, 0, 4, 1, 2) if k in shuffled} | shuffled
    assert list(shuffled) != sorted(shuffled)
    expected, expected_gaps = assemble_window(in_order, 6, C, cfg(gap_fill))
    window, gaps = assemble_window(shuffled, 6, C, cfg(gap_fill))
    np.testing.assert_array_equal(window, expected)
    assert gaps == expected_gaps == (1 if missing else 0)


@pytest.mark.parametrize(
    ("gap_fill", "present", "expected_first_channel"),
    [
        pytest.param("ffill", [0, 1, 4, 5], [0, 1, 1, 1, 4, 5], id="ffill-inner"),
        pytest.param("ffill", [2, 3, 4, 5], [2, 2, 2, 3, 4, 5], id="ffill-leading-takes-first-known"),
        pytest.param("ffill", [0, 1, 2, 3], [0, 1, 2, 3, 3, 3], id="ffill-trailing"),
        pytest.param("ffill", [1, 3, 4], [1, 1, 1, 3, 4, 4], id="ffill-leading-inner-trailing"),
        pytest.param("linear", [0, 1, 4, 5], [0, 1, 2, 3, 4, 5], id="linear-inner"),
        pytest.param("linear", [2, 3, 4, 5], [2, 2, 2, 3, 4, 5], id="linear-leading-held-flat"),
        pytest.param("linear", [0, 1, 2, 3], [0, 1, 2, 3, 3, 3], id="linear-trailing-held-flat"),
        pytest.param("linear", [1, 3, 4], [1, 1, 2, 3, 4, 4], id="linear-leading-inner-trailing"),
    ],
)
def test_gap_filling(gap_fill, present, expected_first_channel):
    window, gaps = assemble_window(rows_of(ramp(present)), 6, C, cfg(gap_fill, max_gap_share=0.5))
    assert gaps == 6 - len(present)
    expected = np.array(expected_first_channel, dtype=np.float32)
    np.testing.assert_allclose(window[:, 0], expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(window[:, 1], 10 * expected, rtol=0, atol=1e-5)
    for step in present:  # known steps are never altered
        np.testing.assert_array_equal(window[step], np.float32([step, 10 * step]))


def test_linear_fill_interpolates_between_unequal_values():
    rows = rows_of({0: [0.0, 100.0], 4: [8.0, 100.0]})
    window, gaps = assemble_window(rows, 5, C, cfg("linear", max_gap_share=0.6))
    assert gaps == 3
    np.testing.assert_allclose(window[:, 0], [0, 2, 4, 6, 8])
    np.testing.assert_allclose(window[:, 1], 100.0)


def test_single_known_row_fills_the_whole_window():
    window, gaps = assemble_window(rows_of({3: [1.0, 2.0]}), 10, C, cfg("ffill", max_gap_share=1.0))
    assert gaps == 9
    np.testing.assert_array_equal(window, np.tile(np.float32([1.0, 2.0]), (10, 1)))


@pytest.mark.parametrize(
    ("n_missing", "rejected"),
    [pytest.param(5, False, id="at-max_gap_share"), pytest.param(6, True, id="just-above")],
)
@pytest.mark.parametrize("gap_fill", ["ffill", "linear"])
def test_too_many_gaps_at_the_boundary(gap_fill, n_missing, rejected):
    n_steps = 100
    window_cfg = WindowConfig(gap_fill=gap_fill, max_gap_share=0.05)  # the default share
    present = [s for s in range(n_steps) if s % 10 != 5 or s // 10 >= n_missing]
    assert n_steps - len(present) == n_missing
    rows = rows_of(ramp(present))
    if rejected:
        with pytest.raises(RejectedInput) as caught:
            assemble_window(rows, n_steps, C, window_cfg)
        assert caught.value.reason == "too_many_gaps"
        assert "6 of 100 steps missing" in caught.value.detail
        assert "5.0%" in caught.value.detail
    else:
        window, gaps = assemble_window(rows, n_steps, C, window_cfg)
        assert gaps == 5 and window.shape == (n_steps, C)


def test_zero_gap_share_rejects_a_single_missing_step():
    rows = rows_of(ramp([0, 1, 3]))
    with pytest.raises(RejectedInput, match="too_many_gaps: 1 of 4 steps missing"):
        assemble_window(rows, 4, C, cfg(max_gap_share=0.0))
    assert assemble_window(rows_of(ramp(range(4))), 4, C, cfg(max_gap_share=0.0))[1] == 0


@pytest.mark.parametrize(
    ("steps", "n_steps", "detail"),
    [
        pytest.param([0, 1, 2, 3], 3, "1 buffered step(s) >= n_steps 3, first 3", id="one-step-at-n_steps"),
        pytest.param([0, 9, 1, 7, 2], 5, "2 buffered step(s) >= n_steps 5, first 7", id="two-beyond-out-of-order"),
        pytest.param([4], 1, "1 buffered step(s) >= n_steps 1, first 4", id="only-beyond"),
    ],
)
def test_steps_at_or_after_n_steps_are_a_length_mismatch(steps, n_steps, detail):
    with pytest.raises(RejectedInput) as caught:
        assemble_window(rows_of(ramp(steps)), n_steps, C, cfg(max_gap_share=1.0))
    assert caught.value.reason == "length_mismatch"
    assert caught.value.detail == detail


def test_length_mismatch_is_reported_before_gaps():
    rows = rows_of(ramp([0, 50]))
    with pytest.raises(RejectedInput) as caught:
        assemble_window(rows, 10, C, cfg(max_gap_share=0.0))
    assert caught.value.reason == "length_mismatch"


@pytest.mark.parametrize("n_steps", [1, 300])
def test_no_rows_is_an_unknown_casting(n_steps):
    with pytest.raises(RejectedInput) as caught:
        assemble_window({}, n_steps, C, cfg())
    assert caught.value.reason == "unknown_casting"
    assert caught.value.detail == "no buffered readings"


def test_default_config_with_five_channels():
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 1, size=(200, 5)).astype(np.float32)
    rows = {s: pack_row(values[s]) for s in range(200) if s not in (0, 77, 199)}
    window, gaps = assemble_window(rows, 200, 5, WindowConfig())
    assert gaps == 3
    expected = values.copy()
    expected[0], expected[77], expected[199] = values[1], values[76], values[198]
    np.testing.assert_array_equal(window, expected)


def runs_of(values: dict[int, list[float]], sizes: list[int]) -> dict[int, bytes]:
    """Consecutive steps of `values` cut into runs of `sizes`, as the store keeps chunks: first step -> rows."""
    steps = sorted(values)
    runs, i = {}, 0
    for size in sizes:
        part = steps[i : i + size]
        assert part == list(range(part[0], part[0] + size)), "a run holds consecutive steps"
        runs[part[0]] = b"".join(pack_row(np.asarray(values[s], dtype=np.float32)) for s in part)
        i += size
    assert i == len(steps)
    return runs


@pytest.mark.parametrize("gap_fill", ["ffill", "linear"])
@pytest.mark.parametrize("seed", range(5))
def test_runs_of_any_chunking_give_the_window_of_single_readings(gap_fill, seed):
    rng = np.random.default_rng(seed)
    values, runs, step = ramp(range(60)), {}, 0
    kept: dict[int, list[float]] = {}
    while step < 60:
        size = min(60 - step, int(rng.integers(1, 12)))
        if seed == 0 or rng.random() > 0.1:  # a lost message leaves a gap of its size
            chunk = {s: values[s] for s in range(step, step + size)}
            runs |= runs_of(chunk, [size])
            kept |= chunk
        step += size
    shuffled = dict(sorted(runs.items(), key=lambda _: rng.random()))
    window_cfg = cfg(gap_fill, max_gap_share=1.0)
    expected = assemble_window(rows_of(kept), 60, C, window_cfg)
    window, gaps = assemble_window(shuffled, 60, C, window_cfg)
    assert gaps == expected[1] == 60 - len(kept)
    np.testing.assert_array_equal(window, expected[0])


def test_overlapping_runs_count_each_step_once():
    values = ramp(range(10))
    runs = runs_of(values, [5, 5]) | runs_of({s: values[s] for s in range(3, 8)}, [5])  # steps 3-7 re-sent
    window, gaps = assemble_window(runs, 10, C, cfg(max_gap_share=0.0))
    assert gaps == 0
    np.testing.assert_array_equal(window, np.array([[s, 10 * s] for s in range(10)], dtype=np.float32))


def test_a_run_that_crosses_n_steps_is_a_length_mismatch():
    runs = runs_of(ramp(range(12)), [6, 6])  # steps 6-11, n_steps 10: steps 10 and 11 are beyond
    with pytest.raises(RejectedInput, match="2 buffered step"):
        assemble_window(runs, 10, C, cfg())
    try:
        assemble_window(runs, 10, C, cfg())
    except RejectedInput as error:
        assert error.reason == "length_mismatch" and "first 10" in error.detail
