"""Parse and validate raw Kafka records from `casting.sensors` into readings and end markers.

Every rejection raises `RejectedInput` with a reason from `REASONS`; nothing here touches I/O.

Input contract (JSON, UTF-8, key = casting id):
    {"type": "reading",  "casting_id": "C-1", "step": 17, "values": [5 floats], "ts": "...optional"}
    {"type": "readings", "casting_id": "C-1", "start_step": 17, "values": [[5 floats], ...]}
    {"type": "end",      "casting_id": "C-1", "n_steps": 300}
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate, chain

import msgspec
import numpy as np
import orjson

from stream_app.config import ValidationConfig
from stream_app.errors import RejectedInput

#: The dead-letter vocabulary: every rejected message or window carries exactly one of these.
REASONS: dict[str, str] = {
    "oversized": "message larger than validation.max_message_bytes",
    "bad_key": "missing key, or a key that is not UTF-8",
    "malformed_json": "value is not UTF-8 JSON",
    "too_deep": "JSON nested deeper than the parser's limit (valid JSON, but no message of the contract)",
    "not_an_object": "JSON value is not an object",
    "missing_field": "a required field is absent",
    "bad_type": "a field has the wrong type",
    "unknown_type": "`type` is not reading, readings or end",
    "bad_casting_id": "casting_id empty, too long, or with control characters",
    "key_mismatch": "record key differs from casting_id",
    "wrong_channel_count": "a reading does not have one value per configured channel",
    "non_finite": "a value is NaN or infinite",
    "out_of_limits": "a value is outside its channel's configured hard limits",
    "bad_step": "step negative, or at/after validation.max_steps",
    "too_short": "end marker with n_steps below validation.min_steps",
    "too_long": "end marker with n_steps above validation.max_steps",
    "unknown_casting": "end marker for a casting with no buffered readings",
    "length_mismatch": "readings before the end marker at or after its n_steps",
    "late_reading": "a reading after its casting's end marker, or under a casting id already used within "
                    "redis.key_ttl_s (the casting was sealed; its window and outcome are unchanged)",
    "conflicting_end": "an end marker whose n_steps differs from the one that sealed the casting",
    "too_many_gaps": "share of missing steps above window.max_gap_share",
    "incomplete": "no end marker within window.abandon_after_s",
    "parse_error": "the parser failed unexpectedly (a bug: the worker logs the traceback)",
}

MAX_CASTING_ID_CHARS = 128
_LIST = {list}
_NUMBER_TYPES = {int, float}  # exact types: JSON gives bool its own type, and bool is no sensor value


@dataclass(slots=True)  # not frozen: one is made per reading message, and a frozen init costs 3.7x (#18)
class Readings:
    """One or more consecutive steps of one casting; `rows` is (n, channels) float32 (treat it as read-only)."""

    casting_id: str
    start_step: int
    rows: np.ndarray


@dataclass(frozen=True, slots=True)
class EndMarker:
    casting_id: str
    n_steps: int


Message = Readings | EndMarker


class MessageParser:
    """Validates records against the configured limits; build once, call per record."""

    def __init__(self, cfg: ValidationConfig) -> None:
        self.cfg = cfg
        self.n_channels = len(cfg.channels)
        self.low = np.array([c.min for c in cfg.channels], dtype=np.float64)
        self.high = np.array([c.max for c in cfg.channels], dtype=np.float64)
        self.names = [c.name for c in cfg.channels]
        # parse_many's fast path: the contract's three messages as typed structs, a row a tuple of exactly one
        # float per channel (msgspec takes JSON ints as floats and refuses bools, strings and a wrong count)
        row = tuple[(float,) * self.n_channels]  # type: ignore[misc]
        self._reading_type = msgspec.defstruct("Reading", [("casting_id", str), ("step", int), ("values", row)],
                                               tag_field="type", tag="reading")
        chunk_type = msgspec.defstruct("Chunk", [("casting_id", str), ("start_step", int), ("values", list[row])],
                                       tag_field="type", tag="readings")
        self._end_type = msgspec.defstruct("End", [("casting_id", str), ("n_steps", int)], tag_field="type",
                                           tag="end")
        self._decoder = msgspec.json.Decoder(self._reading_type | chunk_type | self._end_type)

    def parse(self, key: bytes | None, value: bytes | None) -> Message:
        head = self._head(key, value)
        return head if isinstance(head, EndMarker) else self._readings(*head)

    def parse_many(self, records: Sequence[tuple[bytes | None, bytes | None]]) -> list[Message | RejectedInput]:
        """`parse` of each (key, value), or the `RejectedInput` it would raise, with the same results.

        The common, valid message takes a fast path: msgspec decodes it into a typed struct in C (the
        JSON, the field types, the channel count, no bool or string among the values), and the numeric
        checks (finite, within limits) and the float conversion run once over the rows of the whole
        batch. Whatever the fast path does not accept, a message or a value at fault in any way, takes
        `parse`'s own path, so every reason and detail is `parse`'s (bench/bench_parse.py measures the two).
        """
        results: list[Message | RejectedInput | None] = [None] * len(records)
        fast: list[tuple[int, str, int, Sequence[Sequence[float]]]] = []  # (index, casting id, first step, rows)
        for i, (key, value) in enumerate(records):
            head = self._typed_head(key, value)
            if head is None:
                results[i] = self._parse_or_reject(key, value)
            elif isinstance(head, EndMarker):
                results[i] = head
            else:
                fast.append((i, *head))
        if fast:
            self._check_rows_together(records, fast, results)
        return results  # type: ignore[return-value]

    def _typed_head(self, key: bytes | None, value: bytes | None) -> EndMarker | tuple[str, int, Sequence] | None:
        """A well-formed message's end marker or (casting id, first step, rows), or None for anything else."""
        if key is None or value is None or len(value) > self.cfg.max_message_bytes:
            return None
        try:
            doc = self._decoder.decode(value)
            key_text = key.decode("utf-8")
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):  # ValidationError is a DecodeError
            return None
        casting_id = doc.casting_id
        if key_text != casting_id or not casting_id or len(casting_id) > MAX_CASTING_ID_CHARS \
                or not casting_id.isprintable():
            return None
        if isinstance(doc, self._end_type):
            return EndMarker(casting_id, doc.n_steps)
        if isinstance(doc, self._reading_type):
            start, rows = doc.step, (doc.values,)
        else:
            start, rows = doc.start_step, doc.values
        return (casting_id, start, rows) if rows and self._steps_ok(start, len(rows)) else None

    def _check_rows_together(self, records: Sequence[tuple[bytes | None, bytes | None]],
                             fast: list[tuple[int, str, int, Sequence[Sequence[float]]]],
                             results: list[Message | RejectedInput | None]) -> None:
        """Finite and within limits, over every row of the fast messages at once; a message with a row at
        fault goes through `parse`, which names the value."""
        counts = [len(rows) for *_, rows in fast]
        values = chain.from_iterable(chain.from_iterable(rows for *_, rows in fast))
        array = np.fromiter(values, dtype=np.float64, count=sum(counts) * self.n_channels).reshape(-1, self.n_channels)
        bad_rows = ~np.isfinite(array).all(axis=1) | ((array < self.low) | (array > self.high)).any(axis=1)
        at_fault = set(np.repeat(np.arange(len(fast)), counts)[bad_rows].tolist()) if bad_rows.any() else set()
        rows32 = array.astype(np.float32)
        if len(counts) == len(rows32):  # single readings: each message's (1, channels) view, made in C
            slices = list(rows32.reshape(-1, 1, self.n_channels))
        else:
            ends = list(accumulate(counts))
            slices = [rows32[end - n : end] for end, n in zip(ends, counts, strict=True)]
        for m, ((i, casting_id, start, _), rows) in enumerate(zip(fast, slices, strict=True)):
            if at_fault and m in at_fault:
                results[i] = self._parse_or_reject(*records[i])
            else:
                results[i] = Readings(casting_id, start, rows)

    def _parse_or_reject(self, key: bytes | None, value: bytes | None) -> Message | RejectedInput:
        try:
            return self.parse(key, value)
        except RejectedInput as error:
            return error

    def _readings(self, casting_id: str, start: int, rows: list) -> Readings:
        array = self._rows(rows, first_step=start)
        self._check_steps(start, len(rows))
        return Readings(casting_id, start, array)

    def _head(self, key: bytes | None, value: bytes | None) -> EndMarker | tuple[str, int, list]:
        """Everything `parse` checks before the values: an end marker, or (casting id, first step, rows)."""
        if value is None:
            raise RejectedInput("malformed_json", "empty value (tombstone)")
        if len(value) > self.cfg.max_message_bytes:
            raise RejectedInput("oversized", f"{len(value)} bytes > {self.cfg.max_message_bytes}")
        key_text = _decode_key(key)
        doc = _loads(value)
        if not isinstance(doc, dict):
            raise RejectedInput("not_an_object", f"got {type(doc).__name__}")
        kind = _field(doc, "type", str)
        casting_id = _field(doc, "casting_id", str)
        _check_casting_id(casting_id)
        if casting_id != key_text:
            raise RejectedInput("key_mismatch", f"key {key_text!r} != casting_id {casting_id!r}")
        if kind == "reading":
            step = _field(doc, "step", int)
            return casting_id, step, [_field(doc, "values", list)]
        if kind == "readings":
            start = _field(doc, "start_step", int)
            values = _field(doc, "values", list)
            if not values:
                raise RejectedInput("bad_type", "values: empty chunk")
            return casting_id, start, values
        if kind == "end":
            return EndMarker(casting_id, _field(doc, "n_steps", int))
        raise RejectedInput("unknown_type", f"type {kind!r}")

    def check_length(self, end: EndMarker) -> None:
        """Separate from `parse` so the caller knows which casting's buffer to free on rejection."""
        if end.n_steps < self.cfg.min_steps:
            raise RejectedInput("too_short", f"n_steps {end.n_steps} < min_steps {self.cfg.min_steps}")
        if end.n_steps > self.cfg.max_steps:
            raise RejectedInput("too_long", f"n_steps {end.n_steps} > max_steps {self.cfg.max_steps}")

    def _plain_rows(self, rows: list) -> bool:
        """Lists of the right length holding only JSON ints/floats (bool is its own type), checked at C speed."""
        return (
            set(map(type, rows)) == _LIST
            and set(map(len, rows)) == {self.n_channels}
            and set(map(type, chain.from_iterable(rows))) <= _NUMBER_TYPES
        )

    def _steps_ok(self, first: int, count: int) -> bool:
        return first >= 0 and first + count - 1 < self.cfg.max_steps

    def _check_steps(self, first: int, count: int) -> None:
        last = first + count - 1
        if not self._steps_ok(first, count):
            raise RejectedInput(
                "bad_step", f"steps {first}..{last} outside 0..{self.cfg.max_steps - 1}"
            )

    def _rows(self, rows: list, first_step: int) -> np.ndarray:
        # Fast path for the common case (`_plain_rows`); anything else takes the loop in
        # `_check_row_types`, which finds and reports the first offending row or value.
        if not self._plain_rows(rows):
            self._check_row_types(rows, first_step)
        try:
            array = np.asarray(rows, dtype=np.float64)
        except OverflowError:  # an integer literal beyond float64, e.g. 1 followed by 400 zeros
            raise RejectedInput("out_of_limits", f"steps {first_step}..: a value too large for a float") from None
        finite = np.isfinite(array)
        if not finite.all():
            i, c = np.argwhere(~finite)[0]
            raise RejectedInput("non_finite", f"step {first_step + i} {self.names[c]}: {array[i, c]}")
        outside = (array < self.low) | (array > self.high)
        if outside.any():
            i, c = np.argwhere(outside)[0]
            raise RejectedInput(
                "out_of_limits",
                f"step {first_step + i} {self.names[c]}={float(array[i, c])!r} outside "
                f"[{self.low[c]:g}, {self.high[c]:g}]",
            )
        return array.astype(np.float32)

    def _check_row_types(self, rows: list, first_step: int) -> None:
        for i, row in enumerate(rows):
            if not isinstance(row, list):
                raise RejectedInput("bad_type", f"values[{i}]: expected a list of numbers")
            if len(row) != self.n_channels:
                raise RejectedInput(
                    "wrong_channel_count", f"step {first_step + i}: {len(row)} values, expected {self.n_channels}"
                )
            for value in row:
                # bool is an int in Python; a sensor value of `true` is a producer bug
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise RejectedInput("bad_type", f"step {first_step + i}: non-numeric value {value!r}")


def _loads(value: bytes) -> object:
    """orjson first (several times faster); whatever it refuses goes through the standard library,
    which decides the verdict: it reads NaN/Infinity and integers beyond 64 bits, which then get their
    specific reasons (non_finite, out_of_limits) instead of malformed_json."""
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        pass
    try:
        # decode first: json.loads(bytes) would also accept UTF-16/32, which the contract does not
        return json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RejectedInput("malformed_json", str(exc)[:200]) from None
    except RecursionError:  # orjson stops at 1024 levels, the standard library at the interpreter's stack
        raise RejectedInput("too_deep", "JSON nested deeper than 1024 levels") from None


def _decode_key(key: bytes | None) -> str:
    if key is None:
        raise RejectedInput("bad_key", "record has no key")
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        raise RejectedInput("bad_key", f"key is not UTF-8: {key[:40]!r}") from None


def _field(doc: dict, name: str, kind: type) -> object:
    if name not in doc:
        raise RejectedInput("missing_field", name)
    value = doc[name]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        # 17.0 is accepted as 17; 17.5 is not a step
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        raise RejectedInput("bad_type", f"{name}: expected an integer, got {value!r}"[:200])
    if kind is not int and not isinstance(value, kind):
        raise RejectedInput("bad_type", f"{name}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def _check_casting_id(casting_id: str) -> None:
    if not casting_id or len(casting_id) > MAX_CASTING_ID_CHARS or not casting_id.isprintable():
        raise RejectedInput("bad_casting_id", repr(casting_id[:MAX_CASTING_ID_CHARS]))
