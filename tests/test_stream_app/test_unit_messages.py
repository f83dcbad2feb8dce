"""MessageParser: a table of good and bad records against the input contract in DESIGN.md (no services)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stream_app.config import ValidationConfig
from stream_app.errors import RejectedInput
from stream_app.service.messages import REASONS, EndMarker, MessageParser, Readings

CFG = ValidationConfig()
CHANNELS = CFG.channels
GOOD = [1.2, 1520.0, 150.0, 200.0, 25.0]
KEY = b"C-1"

#: reasons decided on a whole window or by the sweep, not by `parse`/`check_length`
# reasons given to windows (at end marker, scoring or sweep) and the safety net for parser bugs, not to records
WINDOW_REASONS = {"unknown_casting", "length_mismatch", "too_many_gaps", "incomplete", "parse_error"}
#: reasons decided by a record's place after its casting's seal (tests/test_stream_app/test_unit_ingest.py)
SEAL_REASONS = {"late_reading", "conflicting_end"}


@pytest.fixture(scope="module")
def parser() -> MessageParser:
    return MessageParser(CFG)


def doc(**fields) -> bytes:
    return json.dumps(fields).encode()


def reading(step=17, values=None, casting_id="C-1", **extra) -> bytes:
    return doc(type="reading", casting_id=casting_id, step=step, values=GOOD if values is None else values, **extra)


def chunk(start_step=10, values=None, casting_id="C-1") -> bytes:
    values = [GOOD, GOOD, GOOD] if values is None else values
    return doc(type="readings", casting_id=casting_id, start_step=start_step, values=values)


def end(n_steps=300, casting_id="C-1") -> bytes:
    return doc(type="end", casting_id=casting_id, n_steps=n_steps)


def with_value(channel: int, value: float) -> list[float]:
    row = list(GOOD)
    row[channel] = value
    return row


def drop(raw: bytes, field: str) -> bytes:
    parsed = json.loads(raw)
    del parsed[field]
    return json.dumps(parsed).encode()


def padded_to(raw: bytes, size: int) -> bytes:
    """Valid JSON of exactly `size` bytes (trailing whitespace is legal JSON)."""
    return raw + b" " * (size - len(raw))


# (key, value, reason, text the detail must contain)
REJECTED = [
    pytest.param(KEY, padded_to(reading(), CFG.max_message_bytes + 1), "oversized",
                 f"{CFG.max_message_bytes + 1} bytes", id="oversized-one-byte-over"),
    pytest.param(None, reading(), "bad_key", "no key", id="bad_key-none"),
    pytest.param(b"C-\xff\xfe", reading(), "bad_key", "not UTF-8", id="bad_key-not-utf8"),
    pytest.param(KEY, None, "malformed_json", "tombstone", id="malformed-none-value"),
    pytest.param(KEY, b"", "malformed_json", "", id="malformed-empty-value"),
    pytest.param(KEY, b"{not json", "malformed_json", "", id="malformed-not-json"),
    pytest.param(KEY, b"[" * 5000 + b"]" * 5000, "too_deep", "1024 levels", id="too-deep-list"),
    pytest.param(KEY, b'{"type":"reading","casting_id":"C-1","ts":' + b'{"a":' * 3000 + b"1" + b"}" * 3001,
                 "too_deep", "1024 levels", id="too-deep-valid-object"),
    pytest.param(KEY, reading()[:-5], "malformed_json", "", id="malformed-truncated"),
    pytest.param(KEY, b'{"type":"end","casting_id":"C-\xff","n_steps":300}', "malformed_json", "utf-8",
                 id="malformed-value-not-utf8"),
    pytest.param(KEY, b"[1, 2, 3]", "not_an_object", "list", id="not_object-list"),
    pytest.param(KEY, b'"C-1"', "not_an_object", "str", id="not_object-string"),
    pytest.param(KEY, b"17", "not_an_object", "int", id="not_object-number"),
    pytest.param(KEY, b"null", "not_an_object", "NoneType", id="not_object-null"),
    pytest.param(KEY, drop(reading(), "type"), "missing_field", "type", id="missing-type"),
    pytest.param(KEY, drop(reading(), "casting_id"), "missing_field", "casting_id", id="missing-casting_id"),
    pytest.param(KEY, drop(reading(), "step"), "missing_field", "step", id="missing-step"),
    pytest.param(KEY, drop(reading(), "values"), "missing_field", "values", id="missing-reading-values"),
    pytest.param(KEY, drop(chunk(), "start_step"), "missing_field", "start_step", id="missing-start_step"),
    pytest.param(KEY, drop(chunk(), "values"), "missing_field", "values", id="missing-chunk-values"),
    pytest.param(KEY, drop(end(), "n_steps"), "missing_field", "n_steps", id="missing-n_steps"),
    pytest.param(KEY, reading(step=True), "bad_type", "step", id="bad_type-step-bool"),
    pytest.param(KEY, reading(step="17"), "bad_type", "step", id="bad_type-step-string"),
    pytest.param(KEY, reading(step=17.5), "bad_type", "17.5", id="bad_type-step-17.5"),
    pytest.param(KEY, reading(step=None), "bad_type", "step", id="bad_type-step-null"),
    pytest.param(KEY, reading(step=float("nan")), "bad_type", "step", id="bad_type-step-nan"),
    pytest.param(KEY, chunk(start_step=False), "bad_type", "start_step", id="bad_type-start_step-bool"),
    pytest.param(KEY, end(n_steps=300.5), "bad_type", "n_steps", id="bad_type-n_steps-float"),
    pytest.param(KEY, end(n_steps="300"), "bad_type", "n_steps", id="bad_type-n_steps-string"),
    pytest.param(KEY, doc(type=5, casting_id="C-1", n_steps=300), "bad_type", "type", id="bad_type-type-int"),
    pytest.param(KEY, doc(type="end", casting_id=17, n_steps=300), "bad_type", "casting_id",
                 id="bad_type-casting_id-int"),
    pytest.param(KEY, reading(values="1.2,1520,150,200,25"), "bad_type", "values", id="bad_type-values-string"),
    pytest.param(KEY, reading(values={"casting_speed": 1.2}), "bad_type", "values", id="bad_type-values-object"),
    pytest.param(KEY, reading(values=with_value(0, True)), "bad_type", "step 17", id="bad_type-value-bool"),
    pytest.param(KEY, reading(values=with_value(3, "200")), "bad_type", "step 17", id="bad_type-value-string"),
    pytest.param(KEY, reading(values=with_value(4, None)), "bad_type", "step 17", id="bad_type-value-null"),
    pytest.param(KEY, chunk(values=[GOOD, 1.2]), "bad_type", "values[1]", id="bad_type-chunk-row-not-list"),
    pytest.param(KEY, chunk(values=[GOOD, with_value(1, False)]), "bad_type", "step 11",
                 id="bad_type-chunk-value-bool"),
    pytest.param(KEY, chunk(values=[]), "bad_type", "empty chunk", id="bad_type-empty-chunk"),
    pytest.param(KEY, doc(type="bogus", casting_id="C-1"), "unknown_type", "bogus", id="unknown_type-bogus"),
    pytest.param(KEY, doc(type="Reading", casting_id="C-1"), "unknown_type", "Reading", id="unknown_type-case"),
    pytest.param(KEY, doc(type="", casting_id="C-1"), "unknown_type", "''", id="unknown_type-empty"),
    pytest.param(b"", end(casting_id=""), "bad_casting_id", "", id="bad_casting_id-empty"),
    pytest.param(b"C" * 129, end(casting_id="C" * 129), "bad_casting_id", "", id="bad_casting_id-129-chars"),
    pytest.param(b"C-1\n", end(casting_id="C-1\n"), "bad_casting_id", "", id="bad_casting_id-newline"),
    pytest.param(b"C\x00", end(casting_id="C\x00"), "bad_casting_id", "", id="bad_casting_id-nul"),
    pytest.param(b"C-2", reading(), "key_mismatch", "'C-2'", id="key_mismatch-other-id"),
    pytest.param(b"", reading(), "key_mismatch", "'C-1'", id="key_mismatch-empty-key"),
    pytest.param(b"c-1", end(), "key_mismatch", "'c-1'", id="key_mismatch-case"),
    pytest.param(KEY, reading(values=GOOD[:4]), "wrong_channel_count", "step 17: 4 values, expected 5",
                 id="channels-4"),
    pytest.param(KEY, reading(values=[*GOOD, 1.0]), "wrong_channel_count", "step 17: 6 values, expected 5",
                 id="channels-6"),
    pytest.param(KEY, reading(values=[]), "wrong_channel_count", "step 17: 0 values", id="channels-0"),
    pytest.param(KEY, chunk(values=[GOOD, GOOD[:4]]), "wrong_channel_count", "step 11: 4 values",
                 id="channels-chunk-second-row"),
    pytest.param(KEY, reading(values=with_value(2, float("nan"))), "non_finite", "step 17 mold_level: nan",
                 id="non_finite-nan"),
    pytest.param(KEY, reading(values=with_value(0, float("inf"))), "non_finite", "step 17 casting_speed: inf",
                 id="non_finite-infinity"),
    pytest.param(KEY, reading(values=with_value(1, float("-inf"))), "non_finite",
                 "step 17 mold_temperature: -inf", id="non_finite-minus-infinity"),
    pytest.param(KEY, chunk(values=[GOOD, GOOD, with_value(4, float("nan"))]), "non_finite",
                 "step 12 superheat", id="non_finite-chunk-third-row"),
    pytest.param(KEY, reading(step=-1), "bad_step", "steps -1..-1", id="bad_step-negative"),
    pytest.param(KEY, reading(step=CFG.max_steps), "bad_step", f"steps {CFG.max_steps}..{CFG.max_steps}",
                 id="bad_step-equals-max_steps"),
    pytest.param(KEY, reading(step=10**12), "bad_step", "outside 0..499", id="bad_step-huge"),
    pytest.param(KEY, chunk(start_step=-2), "bad_step", "steps -2..0", id="bad_step-chunk-negative-start"),
    pytest.param(KEY, chunk(start_step=CFG.max_steps - 2), "bad_step",
                 f"steps {CFG.max_steps - 2}..{CFG.max_steps} outside 0..{CFG.max_steps - 1}",
                 id="bad_step-chunk-runs-past-max_steps"),
]

# one value just outside each channel's hard limits, below and above
for _c, _ch in enumerate(CHANNELS):
    for _side, _value in (("below-min", _ch.min - 0.001), ("above-max", _ch.max + 0.001)):
        REJECTED.append(pytest.param(
            KEY, reading(values=with_value(_c, _value)), "out_of_limits",
            f"step 17 {_ch.name}=",
            id=f"out_of_limits-{_ch.name}-{_side}",
        ))
REJECTED.append(pytest.param(
    KEY, chunk(start_step=40, values=[GOOD, with_value(3, 1e6)]), "out_of_limits", "step 41 cooling_water_flow",
    id="out_of_limits-chunk-second-row",
))


@pytest.mark.parametrize(("key", "value", "reason", "detail"), REJECTED)
def test_parse_rejects(parser, key, value, reason, detail):
    with pytest.raises(RejectedInput) as caught:
        parser.parse(key, value)
    assert caught.value.reason == reason, caught.value.detail
    assert detail.lower() in caught.value.detail.lower()
    assert reason in REASONS
    if reason == "out_of_limits":
        assert "outside [" in caught.value.detail


@pytest.mark.parametrize(
    ("channel", "value", "shown"),
    [
        pytest.param(0, 0.4, "casting_speed=0.4 outside [0.5, 2.5]", id="casting_speed"),
        pytest.param(1, 1700.0, "mold_temperature=1700.0 outside [1400, 1650]", id="mold_temperature"),
        pytest.param(4, 9.5, "superheat=9.5 outside [10, 50]", id="superheat"),
    ],
)
def test_out_of_limits_detail_shows_value_and_limits(parser, channel, value, shown):
    with pytest.raises(RejectedInput) as caught:
        parser.parse(KEY, reading(values=with_value(channel, value)))
    assert caught.value.detail == f"step 17 {shown}"


def test_out_of_limits_detail_distinguishes_value_from_limit(parser):
    with pytest.raises(RejectedInput) as caught:
        parser.parse(KEY, reading(values=with_value(1, 1650.001)))
    assert "mold_temperature=1650 " not in caught.value.detail


@pytest.mark.parametrize(
    ("n_steps", "reason", "detail"),
    [
        pytest.param(CFG.min_steps - 1, "too_short", f"n_steps {CFG.min_steps - 1} < min_steps {CFG.min_steps}",
                     id="too_short-one-below"),
        pytest.param(0, "too_short", "n_steps 0", id="too_short-zero"),
        pytest.param(-5, "too_short", "n_steps -5", id="too_short-negative"),
        pytest.param(CFG.max_steps + 1, "too_long", f"n_steps {CFG.max_steps + 1} > max_steps {CFG.max_steps}",
                     id="too_long-one-above"),
    ],
)
def test_check_length_rejects(parser, n_steps, reason, detail):
    marker = parser.parse(KEY, end(n_steps=n_steps))  # parse accepts it: the length is checked separately
    assert marker == EndMarker("C-1", n_steps)
    with pytest.raises(RejectedInput) as caught:
        parser.check_length(marker)
    assert caught.value.reason == reason
    assert detail in caught.value.detail


@pytest.mark.parametrize("n_steps", [CFG.min_steps, 300, CFG.max_steps], ids=["min_steps", "middle", "max_steps"])
def test_check_length_accepts_bounds(parser, n_steps):
    parser.check_length(EndMarker("C-1", n_steps))


def test_table_covers_every_reason_the_parser_produces():
    table = {p.values[2] for p in REJECTED} | {"too_short", "too_long"}
    assert table == set(REASONS) - WINDOW_REASONS - SEAL_REASONS


def test_oversized_is_checked_before_anything_else(parser):
    with pytest.raises(RejectedInput) as caught:
        parser.parse(None, b"\xff" * (CFG.max_message_bytes + 1))
    assert caught.value.reason == "oversized"


def test_message_of_exactly_max_bytes_is_accepted(parser):
    message = parser.parse(KEY, padded_to(reading(), CFG.max_message_bytes))
    assert isinstance(message, Readings)


def test_small_max_message_bytes_from_config():
    parser = MessageParser(ValidationConfig(max_message_bytes=256))
    assert isinstance(parser.parse(KEY, padded_to(reading(), 256)), Readings)
    with pytest.raises(RejectedInput, match="oversized: 257 bytes > 256"):
        parser.parse(KEY, padded_to(reading(), 257))


def _rows(message: Readings) -> np.ndarray:
    assert message.rows.dtype == np.float32
    return message.rows


@pytest.mark.parametrize(
    ("key", "value", "expected_start", "expected_rows"),
    [
        pytest.param(KEY, reading(), 17, [GOOD], id="single-reading"),
        pytest.param(KEY, reading(step=17.0), 17, [GOOD], id="step-17.0"),
        pytest.param(KEY, reading(ts="2024-05-01T12:00:00.125Z"), 17, [GOOD], id="with-ts"),
        pytest.param(KEY, reading(step=0), 0, [GOOD], id="step-0"),
        pytest.param(KEY, reading(step=CFG.max_steps - 1), CFG.max_steps - 1, [GOOD], id="last-step"),
        pytest.param(KEY, reading(values=[1, 1500, 150, 200, 25]), 17, [[1, 1500, 150, 200, 25]], id="int-values"),
        pytest.param(KEY, chunk(), 10, [GOOD] * 3, id="chunk"),
        pytest.param(KEY, chunk(start_step=5.0, values=[GOOD]), 5, [GOOD], id="chunk-of-one-start-5.0"),
        pytest.param(KEY, chunk(start_step=CFG.max_steps - 5, values=[GOOD] * 5), CFG.max_steps - 5, [GOOD] * 5,
                     id="chunk-ending-at-last-step"),
        pytest.param(b"C" * 128, reading(casting_id="C" * 128), 17, [GOOD], id="casting_id-128-chars"),
        pytest.param("Guß-7".encode(), reading(casting_id="Guß-7"), 17, [GOOD], id="casting_id-non-ascii"),
        pytest.param(KEY, reading(values=[c.min for c in CHANNELS]), 17, [[c.min for c in CHANNELS]],
                     id="every-channel-at-min"),
        pytest.param(KEY, reading(values=[c.max for c in CHANNELS]), 17, [[c.max for c in CHANNELS]],
                     id="every-channel-at-max"),
    ],
)
def test_parse_accepts_readings(parser, key, value, expected_start, expected_rows):
    message = parser.parse(key, value)
    assert isinstance(message, Readings)
    assert message.casting_id == key.decode()
    assert message.start_step == expected_start
    assert type(message.start_step) is int
    np.testing.assert_array_equal(_rows(message), np.asarray(expected_rows, dtype=np.float32))


@pytest.mark.parametrize("edge", ["min", "max"])
@pytest.mark.parametrize("channel", range(len(CHANNELS)), ids=[c.name for c in CHANNELS])
def test_limit_edges_are_inside(parser, channel, edge):
    value = getattr(CHANNELS[channel], edge)
    message = parser.parse(KEY, reading(values=with_value(channel, value)))
    assert _rows(message)[0, channel] == np.float32(value)


@pytest.mark.parametrize(
    ("value", "n_steps"),
    [
        pytest.param(end(), 300, id="end"),
        pytest.param(end(n_steps=300.0), 300, id="end-n_steps-300.0"),
        pytest.param(doc(type="end", casting_id="C-1", n_steps=120, ts="2024-05-01T12:00:00Z"), 120, id="end-ts"),
    ],
)
def test_parse_accepts_end_marker(parser, value, n_steps):
    message = parser.parse(KEY, value)
    assert message == EndMarker("C-1", n_steps)
    assert type(message.n_steps) is int


def test_limits_come_from_config():
    cfg = ValidationConfig(channels=[{"name": "a", "unit": "u", "min": 0.0, "max": 1.0}], max_steps=10, min_steps=1)
    parser = MessageParser(cfg)
    assert parser.parse(KEY, reading(step=9, values=[1.0])).rows.shape == (1, 1)
    with pytest.raises(RejectedInput, match=r"out_of_limits: step 3 a=1\.5 outside \[0, 1\]"):
        parser.parse(KEY, reading(step=3, values=[1.5]))
    with pytest.raises(RejectedInput, match="wrong_channel_count"):
        parser.parse(KEY, reading(values=GOOD))
    with pytest.raises(RejectedInput, match="bad_step"):
        parser.parse(KEY, reading(step=10, values=[0.5]))


def test_huge_integer_value_is_rejected_not_raised(parser):
    raw = b'{"type":"reading","casting_id":"C-1","step":1,"values":[1' + b"0" * 400 + b',1500,150,200,25]}'
    with pytest.raises(RejectedInput) as caught:
        parser.parse(KEY, raw)
    assert caught.value.reason == "out_of_limits"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_json_in_other_unicode_encodings_is_malformed(parser, encoding):
    with pytest.raises(RejectedInput) as caught:
        parser.parse(KEY, end().decode().encode(encoding))
    assert caught.value.reason == "malformed_json"


def _outcome(parser, key, value):
    try:
        message = parser.parse(key, value)
    except RejectedInput as error:
        return ("rejected", error.reason, error.detail)
    if isinstance(message, Readings):
        return ("readings", message.casting_id, message.start_step, message.rows.dtype, message.rows.tolist())
    return ("end", message)


def _check_batch(parser, batch) -> list:
    results = parser.parse_many(batch)
    assert len(results) == len(batch)
    for (key, value), result in zip(batch, results, strict=True):
        if isinstance(result, RejectedInput):
            got = ("rejected", result.reason, result.detail)
        elif isinstance(result, Readings):
            got = ("readings", result.casting_id, result.start_step, result.rows.dtype, result.rows.tolist())
        else:
            got = ("end", result)
        assert got == _outcome(parser, key, value)
    return results


def test_parse_many_gives_what_parse_gives_message_by_message(parser):
    # every rejected case of the table, each between good readings and chunks, in one batch: the batch
    # path must give every message parse's own result (reason and detail), and good rows bit for bit
    good = [(KEY, reading()), (KEY, chunk(start_step=40, values=[GOOD, with_value(2, 151.5)])), (KEY, end(120)),
            (KEY, chunk(start_step=60, values=[with_value(0, 1.0 + k / 100) for k in range(6)]))]  # not batched
    batch = list(good)
    for param in REJECTED:
        batch += [(param.values[0], param.values[1]), good[0], good[1], good[3]]
    results = _check_batch(parser, batch)
    assert sum(isinstance(r, RejectedInput) for r in results) == len(REJECTED)
    # a value beyond float64 in a batch: parse names it, and the rest of the batch is read as before
    huge = reading(values=[12345.678, *GOOD[1:]]).replace(b"12345.678", b"1" + b"0" * 400)
    results = _check_batch(parser, [good[0], (KEY, huge), good[1]])
    assert [type(r) for r in results] == [Readings, RejectedInput, Readings]


def test_parse_many_reads_the_contract_s_looser_corners_as_parse_does(parser):
    # valid messages the typed fast path refuses or reads differently must still get parse's result
    odd = [
        reading(step=17.0),  # a whole float as a step: parse takes it as 17
        reading(values=[1, 1520, 150, 200, 25]),  # JSON ints as values
        reading(ts="2026-11-29T10:00:00Z", extra={"nested": [[1]]}),  # fields beyond the contract
        b' {"values": [1.2, 1520.0, 150.0, 200.0, 25.0], "step": 3, "casting_id": "C-1", "type": "reading"} ',
        b'{"type": "reading", "casting_id": "X", "step": 1, "values": [1.2, 1520.0, 150.0, 200.0, 25.0], '
        b'"casting_id": "C-1"}',  # a repeated field: the last one counts, as in orjson
        b'{"type": "reading", "type": "end", "casting_id": "C-1", "n_steps": 120}',
        end(n_steps=120.0),
        chunk(values=[[1, 1520, 150, 200, 25], GOOD]),
        reading(step=4).replace(b'"C-1"', b'"C\\u002d1"'),  # an escaped character in the id
    ]
    results = _check_batch(parser, [(KEY, value) for value in odd])
    assert not any(isinstance(r, RejectedInput) for r in results), results
