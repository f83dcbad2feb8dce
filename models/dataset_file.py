"""The plant's dataset file format: long-form readings (Parquet or CSV) plus a labels CSV.

Readings, one row per casting and step::

    casting_id (string) | step (int, 0-based) | <channel 1> (float) | ... | <channel C> (float)

Parquet (via pyarrow) when the path ends in ``.parquet``, CSV otherwise; channel columns are named as in
the stream config's ``validation.channels``. Other columns are ignored. Labels: CSV ``casting_id,label``
where ``label`` is 0/1 (binary: 1 = defect) or class names (multi-class, any number of classes).

Every problem is a `DatasetError` that names the file and the row (1-based data row, header not
counted) or the casting, never a traceback.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import DatasetError

__all__ = [
    "BINARY_CLASS_NAMES",
    "DatasetError",
    "LabelledDataset",
    "read_dataset",
    "read_labels",
    "read_readings",
    "write_labels",
    "write_readings",
]

ID_COLUMN = "casting_id"
STEP_COLUMN = "step"
LABEL_COLUMN = "label"
BINARY_CLASS_NAMES = ["0", "1"]


@dataclass
class LabelledDataset:
    """Labelled castings in the order they first appear in the readings file."""

    ids: list[str]
    sequences: list[np.ndarray]  # float32 (T_i, C), channels in ``channels`` order
    labels: np.ndarray  # int64 index into ``class_names``
    class_names: list[str]
    channels: list[str]
    summary: dict[str, Any] = field(default_factory=dict)  # castings found / labelled / unlabelled / ...

    @property
    def is_binary(self) -> bool:
        """0/1 labels: one defect probability. Anything else is multi-class over ``class_names``."""
        return self.class_names == BINARY_CLASS_NAMES

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, idx: Sequence[int] | np.ndarray) -> LabelledDataset:
        idx = [int(i) for i in idx]
        return LabelledDataset(
            [self.ids[i] for i in idx],
            [self.sequences[i] for i in idx],
            self.labels[idx],
            list(self.class_names),
            list(self.channels),
            dict(self.summary),
        )


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() == ".parquet"


def write_readings(path: str | Path, castings: Iterable[tuple[str, np.ndarray]], channels: Sequence[str]) -> int:
    """Write ``(casting_id, (T, C) array)`` pairs in long form; returns the number of castings written.

    Values are stored as float32 (Parquet) or as the shortest decimal that reads back as the same float32
    (CSV), so a float32 window round-trips bit for bit.
    """
    import pyarrow as pa

    path = Path(path)
    channels = list(channels)
    ids: list[str] = []
    steps: list[np.ndarray] = []
    blocks: list[np.ndarray] = []
    for casting_id, values in castings:
        arr = np.asarray(values, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != len(channels):
            raise DatasetError(
                f"casting {casting_id!r}: expected a (steps, {len(channels)}) array, got shape {arr.shape}"
            )
        ids.extend([str(casting_id)] * len(arr))
        steps.append(np.arange(len(arr), dtype=np.int64))
        blocks.append(arr)
    n_castings = len(blocks)
    values = np.concatenate(blocks) if blocks else np.zeros((0, len(channels)), dtype=np.float32)
    step = np.concatenate(steps) if steps else np.zeros(0, dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    if _is_parquet(path):
        import pyarrow.parquet as pq

        columns = {ID_COLUMN: pa.array(ids, type=pa.string()), STEP_COLUMN: pa.array(step, type=pa.int64())}
        columns.update({name: pa.array(values[:, j], type=pa.float32()) for j, name in enumerate(channels)})
        pq.write_table(pa.table(columns), path)
        return n_castings
    formatted = [[np.format_float_positional(v, unique=True, trim="-") for v in values[:, j]]
                 for j in range(len(channels))]  # fmt: skip
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([ID_COLUMN, STEP_COLUMN, *channels])
        for i in range(len(ids)):
            writer.writerow([ids[i], int(step[i]), *(col[i] for col in formatted)])
    return n_castings


def write_labels(path: str | Path, labels: Iterable[tuple[str, str | int]]) -> int:
    """Write ``casting_id,label`` rows; returns how many."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([ID_COLUMN, LABEL_COLUMN])
        for casting_id, label in labels:
            writer.writerow([casting_id, label])
            n += 1
    return n


def read_labels(path: str | Path) -> dict[str, str]:
    """``casting_id -> label`` from a CSV with exactly the columns ``casting_id,label``.

    A casting listed twice with the same label is fine; with different labels it is an error.
    """
    path = Path(path)
    try:
        fh = open(path, newline="", encoding="utf-8-sig")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise DatasetError(f"labels file {path}: cannot be read ({exc.strerror})") from None
    with fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise DatasetError(f"labels file {path} is empty; expected the header 'casting_id,label'")
        header = [h.strip() for h in header]
        unknown = [h for h in header if h not in (ID_COLUMN, LABEL_COLUMN)]
        if unknown:
            raise DatasetError(
                f"labels file {path}: unknown column(s) {', '.join(map(repr, unknown))} in the header; "
                "expected exactly 'casting_id,label'"
            )
        missing = [c for c in (ID_COLUMN, LABEL_COLUMN) if c not in header]
        if missing or len(header) != 2:
            raise DatasetError(f"labels file {path}: the header must be 'casting_id,label', got {','.join(header)!r}")
        id_col, label_col = header.index(ID_COLUMN), header.index(LABEL_COLUMN)
        labels: dict[str, str] = {}
        first_row: dict[str, int] = {}
        for row_no, row in enumerate(reader, start=1):
            if not row or all(not cell.strip() for cell in row):
                continue  # blank line
            if len(row) != 2:
                raise DatasetError(f"labels file {path}, row {row_no}: expected 2 fields, got {len(row)}")
            casting_id, label = row[id_col].strip(), row[label_col].strip()
            if not casting_id:
                raise DatasetError(f"labels file {path}, row {row_no}: empty casting_id")
            if not label:
                raise DatasetError(f"labels file {path}, row {row_no}: casting {casting_id!r} has an empty label")
            if casting_id in labels and labels[casting_id] != label:
                raise DatasetError(
                    f"labels file {path}, row {row_no}: casting {casting_id!r} is labelled {label!r} here "
                    f"but {labels[casting_id]!r} in row {first_row[casting_id]}"
                )
            labels.setdefault(casting_id, label)
            first_row.setdefault(casting_id, row_no)
    if not labels:
        raise DatasetError(f"labels file {path} has a header but no labels")
    return labels


def class_names_of(labels: Iterable[str]) -> list[str]:
    """``["0", "1"]`` for 0/1 labels (binary); otherwise the distinct names, in natural order."""
    names = set(labels)
    if names <= set(BINARY_CLASS_NAMES):
        return list(BINARY_CLASS_NAMES)

    def natural(name: str) -> list[Any]:
        return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name) if part]

    return sorted(names, key=natural)


def _read_table(path: Path, columns: Sequence[str]) -> dict[str, Any]:
    """The named columns of a readings file as pyarrow arrays; a clear error for a missing column."""
    import pyarrow as pa

    if not path.is_file():
        raise DatasetError(f"readings file {path} does not exist")
    try:
        if _is_parquet(path):
            import pyarrow.parquet as pq

            names = pq.read_schema(path).names
        else:
            import pyarrow.csv as pcsv

            with open(path, encoding="utf-8-sig") as fh:
                names = next(csv.reader(fh), [])
            names = [n.strip() for n in names]
    except (OSError, pa.ArrowException) as exc:
        raise DatasetError(f"readings file {path}: cannot be read ({exc})") from None
    missing = [c for c in columns if c not in names]
    if missing:
        raise DatasetError(
            f"readings file {path}: missing column(s) {', '.join(map(repr, missing))}; it has "
            f"{', '.join(map(repr, names))}. Channel columns must be named as in the stream config's "
            "validation.channels"
        )
    try:
        if _is_parquet(path):
            table = pq.read_table(path, columns=list(columns))
        else:
            types = {ID_COLUMN: pa.string(), STEP_COLUMN: pa.string()}
            types.update({c: pa.string() for c in columns[2:]})  # parsed below, to name the bad row
            table = pcsv.read_csv(
                path,
                read_options=pcsv.ReadOptions(use_threads=False),
                convert_options=pcsv.ConvertOptions(
                    column_types=types, include_columns=list(columns), strings_can_be_null=False
                ),
            )
    except (OSError, pa.ArrowException) as exc:
        raise DatasetError(f"readings file {path}: cannot be read ({exc})") from None
    return {c: table.column(c).combine_chunks() for c in columns}


def _as_ids(path: Path, column: Any) -> np.ndarray:
    values = column.to_pylist()
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        text = "" if v is None else str(v).strip()
        if not text:
            raise DatasetError(f"readings file {path}, row {i + 1}: empty casting_id")
        out[i] = text
    return out


def _as_steps(path: Path, column: Any) -> np.ndarray:
    import pyarrow as pa

    if pa.types.is_integer(column.type) and column.null_count == 0:
        return column.to_numpy().astype(np.int64)
    values = column.to_pylist()
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        try:
            number = float(str(v).strip())
            if not number.is_integer():
                raise ValueError
            out[i] = int(number)
        except (TypeError, ValueError):
            raise DatasetError(f"readings file {path}, row {i + 1}: step {v!r} is not an integer") from None
    return out


def _as_floats(path: Path, name: str, column: Any, ids: np.ndarray) -> np.ndarray:
    import pyarrow as pa

    if pa.types.is_floating(column.type) or pa.types.is_integer(column.type):
        values = column.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls become NaN
    else:
        values = np.empty(len(column), dtype=np.float64)
        for i, v in enumerate(column.to_pylist()):
            try:
                values[i] = float(v) if v is not None and str(v).strip() else np.nan
            except ValueError:
                raise DatasetError(
                    f"readings file {path}, row {i + 1} (casting {ids[i]!r}): {name} = {v!r} is not a number"
                ) from None
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        i = int(bad[0])
        raise DatasetError(
            f"readings file {path}, row {i + 1} (casting {ids[i]!r}): {name} is {column[i].as_py()!r}, not a finite "
            f"number ({len(bad)} such row(s) in this column)"
        )
    as32 = values.astype(np.float32)
    if not np.isfinite(as32).all():
        i = int(np.flatnonzero(~np.isfinite(as32))[0])
        raise DatasetError(f"readings file {path}, row {i + 1} (casting {ids[i]!r}): {name} overflows float32")
    return as32


def read_readings(
    path: str | Path, channels: Sequence[str], *, min_steps: int = 1, max_steps: int | None = None
) -> tuple[list[str], list[np.ndarray]]:
    """Castings of a readings file: (ids in first-appearance order, float32 ``(T, C)`` arrays)."""
    path = Path(path)
    channels = list(channels)
    if len(set(channels)) != len(channels) or {ID_COLUMN, STEP_COLUMN} & set(channels):
        raise DatasetError(f"channel names must be distinct and not {ID_COLUMN!r}/{STEP_COLUMN!r}: {channels}")
    cols = _read_table(path, [ID_COLUMN, STEP_COLUMN, *channels])
    ids = _as_ids(path, cols[ID_COLUMN])
    steps = _as_steps(path, cols[STEP_COLUMN])
    values = np.stack([_as_floats(path, c, cols[c], ids) for c in channels], axis=1) if len(ids) else None
    if values is None:
        raise DatasetError(f"readings file {path} has no rows")

    unique, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    order_of_casting = np.argsort(first, kind="stable")  # castings in first-appearance order
    rows = np.lexsort((steps, inverse))  # grouped by casting, steps ascending
    bounds = np.searchsorted(inverse[rows], np.arange(len(unique) + 1))
    out_ids: list[str] = []
    out_seqs: list[np.ndarray] = []
    for u in order_of_casting:
        group = rows[bounds[u] : bounds[u + 1]]
        casting_id = str(unique[u])
        got = steps[group]
        n = len(group)
        if not np.array_equal(got, np.arange(n)):
            dup = got[np.flatnonzero(np.diff(got) == 0)]
            what = f"step {int(dup[0])} appears twice" if len(dup) else f"steps run {int(got[0])}..{int(got[-1])}"
            raise DatasetError(
                f"readings file {path}: casting {casting_id!r} has {n} rows but its steps are not 0..{n - 1} ({what})"
            )
        if n < min_steps or (max_steps is not None and n > max_steps):
            raise DatasetError(
                f"readings file {path}: casting {casting_id!r} has {n} steps, outside the length limits "
                f"{min_steps}..{max_steps if max_steps is not None else 'any'} (validation.min_steps/max_steps)"
            )
        out_ids.append(casting_id)
        out_seqs.append(np.ascontiguousarray(values[group]))
    return out_ids, out_seqs


def read_dataset(
    readings_path: str | Path,
    labels_path: str | Path,
    channels: Sequence[str],
    *,
    min_steps: int,
    max_steps: int,
) -> LabelledDataset:
    """Readings joined with labels. Castings without a label are left out (counted in ``summary``)."""
    ids, sequences = read_readings(readings_path, channels, min_steps=min_steps, max_steps=max_steps)
    labels = read_labels(labels_path)
    labelled = [i for i, casting_id in enumerate(ids) if casting_id in labels]
    if not labelled:
        raise DatasetError(
            f"no casting of {readings_path} has a label in {labels_path} "
            f"(e.g. readings have {ids[0]!r}, labels have {next(iter(labels))!r})"
        )
    present = set(ids)
    names = class_names_of(labels[ids[i]] for i in labelled)
    index = {name: k for k, name in enumerate(names)}
    y = np.array([index[labels[ids[i]]] for i in labelled], dtype=np.int64)
    summary = {
        "readings": str(readings_path),
        "labels": str(labels_path),
        "castings_found": len(ids),
        "labelled": len(labelled),
        "unlabelled": len(ids) - len(labelled),
        "labels_without_casting": sum(1 for k in labels if k not in present),
        "class_counts": {name: int(np.sum(y == k)) for k, name in enumerate(names)},
        "steps_min": int(min(len(sequences[i]) for i in labelled)),
        "steps_max": int(max(len(sequences[i]) for i in labelled)),
    }
    return LabelledDataset(
        [ids[i] for i in labelled], [sequences[i] for i in labelled], y, names, list(channels), summary
    )
