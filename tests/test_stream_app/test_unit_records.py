"""DeadLetter and ScoringRequest serialisation (no services)."""

from __future__ import annotations

import base64
import json

import pytest

from stream_app.service.messages import REASONS
from stream_app.service.records import PAYLOAD_LIMIT_BYTES, DeadLetter, ScoringRequest, SourceRecord, iso_time

SOURCE = {"topic": "casting.sensors", "partition": 3, "offset": 1234}
NOW = 1_700_000_000.5


def letter(**fields) -> dict:
    source = SourceRecord("casting.sensors", 3, 1234, b"C-1", b"{oops").source()  # as the ingest stage does
    base = {"reason": "malformed_json", "detail": "bad", "source": source, "key": b"C-1", "payload": b"{oops"}
    return json.loads(DeadLetter(**{**base, **fields}).to_bytes(NOW))


def test_dead_letter_fields():
    doc = letter(casting_id="C-1")
    assert doc == {
        "reason": "malformed_json",
        "detail": "bad",
        "casting_id": "C-1",
        "source": SOURCE,
        "key": "C-1",
        "payload": "{oops",
        "payload_bytes": 5,
        "payload_truncated": False,
        "rejected_at": "2023-11-14T22:13:20.500+00:00",
    }


@pytest.mark.parametrize("reason", sorted(REASONS))
def test_every_reason_is_accepted(reason):
    assert letter(reason=reason)["reason"] == reason


@pytest.mark.parametrize("reason", ["", "bogus", "Malformed_JSON", "oversize"])
def test_unknown_reason_raises(reason):
    with pytest.raises(ValueError, match="unknown dead-letter reason"):
        DeadLetter(reason, "x", SOURCE, None, None)


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        pytest.param("key", b"C-\xff\xfe", id="key"),
        pytest.param("payload", b'{"casting_id":"C-\xff"}', id="payload"),
        pytest.param("payload", bytes(range(256)), id="payload-all-bytes"),
    ],
)
def test_non_utf8_bytes_are_base64(field, raw):
    doc = letter(**{field: raw})
    assert set(doc[field]) == {"base64"}
    assert base64.b64decode(doc[field]["base64"]) == raw


def test_utf8_text_stays_text():
    doc = letter(key="Guß-1".encode(), payload='{"note":"Überhitzung"}'.encode())
    assert doc["key"] == "Guß-1" and doc["payload"] == '{"note":"Überhitzung"}'


def test_missing_key_and_payload():
    doc = letter(key=None, payload=None)
    assert doc["key"] is None
    assert doc["payload"] == "" and doc["payload_bytes"] == 0 and doc["payload_truncated"] is False


@pytest.mark.parametrize(
    ("size", "truncated"),
    [(PAYLOAD_LIMIT_BYTES - 1, False), (PAYLOAD_LIMIT_BYTES, False), (PAYLOAD_LIMIT_BYTES + 1, True), (300_000, True)],
)
def test_payload_truncation(size, truncated):
    payload = b"x" * size
    doc = letter(payload=payload)
    assert doc["payload_bytes"] == size
    assert doc["payload_truncated"] is truncated
    assert doc["payload"] == "x" * min(size, PAYLOAD_LIMIT_BYTES)


def test_truncation_inside_a_multibyte_character_keeps_the_bytes():
    payload = b"a" * (PAYLOAD_LIMIT_BYTES - 1) + "ß".encode() * 10  # the cut splits the first ß
    doc = letter(payload=payload)
    kept = doc["payload"]
    kept_bytes = base64.b64decode(kept["base64"]) if isinstance(kept, dict) else kept.encode()
    assert kept_bytes == payload[:PAYLOAD_LIMIT_BYTES]
    assert doc["payload_truncated"] is True and doc["payload_bytes"] == len(payload)


def test_dead_letter_is_compact_utf8_json():
    raw = DeadLetter("too_short", "n_steps 3 < min_steps 100", SOURCE, b"C-1", b"{}", "C-1").to_bytes(NOW)
    assert b" " not in raw.replace(b"n_steps 3 < min_steps 100", b"")
    raw.decode("utf-8")


@pytest.mark.parametrize(
    "request_",
    [
        ScoringRequest("C-1", 300, 1_700_000_000.123456, SOURCE),
        ScoringRequest("Guß 7/β", 100, 0.0, {"topic": "t", "partition": 0, "offset": 0}),
        ScoringRequest("C" * 128, 500, 1e9 + 0.5, {}),
    ],
    ids=["plain", "unicode-id", "long-id"],
)
def test_scoring_request_round_trip(request_):
    raw = request_.to_bytes()
    assert isinstance(raw, bytes)
    assert ScoringRequest.from_bytes(raw) == request_
    assert ScoringRequest.from_bytes(raw).to_bytes() == raw


def test_scoring_request_fields():
    doc = json.loads(ScoringRequest("C-1", 300, 12.5, SOURCE).to_bytes())
    assert doc == {"casting_id": "C-1", "n_steps": 300, "end_consumed_at": 12.5, "source": SOURCE}


@pytest.mark.parametrize(
    ("epoch_s", "text"),
    [(0.0, "1970-01-01T00:00:00.000+00:00"), (NOW, "2023-11-14T22:13:20.500+00:00"),
     (1.0005, "1970-01-01T00:00:01.000+00:00")],
)
def test_iso_time(epoch_s, text):
    assert iso_time(epoch_s) == text
