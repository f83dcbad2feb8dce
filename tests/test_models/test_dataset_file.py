"""The dataset file format: round trips and every error case names the row or casting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.checkpoint import checkpoint_channels
from models.dataset_file import (
    DatasetError,
    read_dataset,
    read_labels,
    read_readings,
    write_labels,
    write_readings,
)
from models.errors import CastingDefectError

CHANNELS = ["a", "b", "c"]


def _castings(n: int = 4, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    # awkward float32 values (tiny, huge, negative) to prove exact round trips
    return [(f"C-{i}", (rng.standard_normal((5 + i, len(CHANNELS))) * 10.0 ** rng.integers(-6, 6)).astype(np.float32))
            for i in range(n)]  # fmt: skip


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_readings_round_trip_bit_exact(tmp_path: Path, suffix: str) -> None:
    castings = _castings()
    path = tmp_path / f"readings{suffix}"
    assert write_readings(path, castings, CHANNELS) == len(castings)
    ids, seqs = read_readings(path, CHANNELS)
    assert ids == [c for c, _ in castings]
    for (_, want), got in zip(castings, seqs, strict=True):
        assert got.dtype == np.float32
        assert got.tobytes() == want.tobytes()


def test_channels_are_taken_in_the_requested_order_and_extra_columns_ignored(tmp_path: Path) -> None:
    castings = _castings(2)
    path = tmp_path / "r.parquet"
    write_readings(path, castings, CHANNELS)
    _, seqs = read_readings(path, ["c", "a"])
    np.testing.assert_array_equal(seqs[0], castings[0][1][:, [2, 0]])


def test_rows_in_any_order_are_grouped_by_casting_and_sorted_by_step(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("casting_id,step,a\nx,1,2.5\ny,0,7\nx,0,1.5\ny,1,8\n", encoding="utf-8")
    ids, seqs = read_readings(path, ["a"])
    assert ids == ["x", "y"]
    np.testing.assert_array_equal(seqs[0][:, 0], [1.5, 2.5])


def _labelled(tmp_path: Path, labels: dict[str, str], n: int = 4) -> tuple[Path, Path]:
    readings = tmp_path / "r.parquet"
    write_readings(readings, _castings(n), CHANNELS)
    path = tmp_path / "labels.csv"
    write_labels(path, labels.items())
    return readings, path


def test_read_dataset_binary(tmp_path: Path) -> None:
    readings, labels = _labelled(tmp_path, {"C-0": "0", "C-1": "1", "C-3": "1", "ghost": "0"})
    ds = read_dataset(readings, labels, CHANNELS, min_steps=1, max_steps=100)
    assert ds.is_binary and ds.class_names == ["0", "1"]
    assert ds.ids == ["C-0", "C-1", "C-3"]
    assert ds.labels.tolist() == [0, 1, 1]
    assert ds.channels == CHANNELS
    assert ds.summary["castings_found"] == 4
    assert ds.summary["unlabelled"] == 1
    assert ds.summary["labels_without_casting"] == 1


def test_read_dataset_multiclass_names(tmp_path: Path) -> None:
    readings, labels = _labelled(tmp_path, {"C-0": "crack", "C-1": "ok", "C-2": "breakout", "C-3": "ok"})
    ds = read_dataset(readings, labels, CHANNELS, min_steps=1, max_steps=100)
    assert not ds.is_binary
    assert ds.class_names == ["breakout", "crack", "ok"]
    assert ds.labels.tolist() == [1, 2, 0, 2]


def test_labels_unknown_column(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("casting_id,label,grade\nx,1,S235\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="unknown column.*'grade'"):
        read_labels(path)


def test_labels_duplicate_with_different_labels_names_both_rows(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("casting_id,label\nx,1\ny,0\nx,1\nx,0\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"row 4: casting 'x' is labelled '0' here but '1' in row 1"):
        read_labels(path)


def test_labels_empty_id(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("casting_id,label\nx,1\n,0\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="row 2: empty casting_id"):
        read_labels(path)


def test_dataset_error_is_in_the_project_error_tree() -> None:
    assert issubclass(DatasetError, CastingDefectError)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_missing_channel_column(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"r{suffix}"
    write_readings(path, _castings(2), CHANNELS)
    with pytest.raises(DatasetError, match="missing column.*'mold_level'"):
        read_readings(path, [*CHANNELS, "mold_level"])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_non_finite_value_names_row_and_casting(tmp_path: Path, suffix: str, bad: float) -> None:
    castings = _castings(2)
    castings[1][1][2, 1] = bad
    path = tmp_path / f"r{suffix}"
    write_readings(path, castings, CHANNELS)
    row = len(castings[0][1]) + 3  # 1-based data row of casting 1, step 2
    with pytest.raises(DatasetError, match=rf"row {row} \(casting 'C-1'\): b is .* not a finite number"):
        read_readings(path, CHANNELS)


def test_empty_cell_in_csv_is_not_finite(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("casting_id,step,a\nx,0,1\nx,1,\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"row 2 \(casting 'x'\): a is"):
        read_readings(path, ["a"])


def test_text_in_a_channel_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("casting_id,step,a\nx,0,1\nx,1,hot\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"row 2 \(casting 'x'\): a = 'hot' is not a number"):
        read_readings(path, ["a"])


def test_casting_outside_length_limits(tmp_path: Path) -> None:
    readings, labels = _labelled(tmp_path, {"C-0": "0", "C-1": "1"})
    with pytest.raises(DatasetError, match=r"casting 'C-0' has 5 steps, outside the length limits 6\.\.100"):
        read_dataset(readings, labels, CHANNELS, min_steps=6, max_steps=100)
    with pytest.raises(DatasetError, match=r"casting 'C-3' has 8 steps, outside the length limits 1\.\.7"):
        read_dataset(readings, labels, CHANNELS, min_steps=1, max_steps=7)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("x,0,1\nx,2,1\n", r"casting 'x' has 2 rows but its steps are not 0\.\.1"),
        ("x,0,1\nx,0,1\n", r"step 0 appears twice"),
        ("x,1,1\nx,2,1\n", r"steps run 1\.\.2"),
        ("x,0,1\nx,1.5,1\n", r"row 2: step '1.5' is not an integer"),
        ("x,0,1\n,1,1\n", r"row 2: empty casting_id"),
    ],
)
def test_bad_steps_and_ids(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "r.csv"
    path.write_text("casting_id,step,a\n" + body, encoding="utf-8")
    with pytest.raises(DatasetError, match=message):
        read_readings(path, ["a"])


def test_no_labelled_casting_is_an_error(tmp_path: Path) -> None:
    readings, labels = _labelled(tmp_path, {"other": "1"})
    with pytest.raises(DatasetError, match="no casting of"):
        read_dataset(readings, labels, CHANNELS, min_steps=1, max_steps=100)


def test_checkpoint_channels_new_and_old_form() -> None:
    new = {"metadata": {"channels": [{"name": "a", "unit": "degC"}, {"name": "b", "unit": None}]}}
    assert checkpoint_channels(new) == [{"name": "a", "unit": "degC"}, {"name": "b", "unit": None}]
    old = {"metadata": {"channels": ["a", "b"]}}
    assert checkpoint_channels(old) == [{"name": "a", "unit": None}, {"name": "b", "unit": None}]
    with pytest.raises(ValueError, match="no channel set"):
        checkpoint_channels({"metadata": {}})
