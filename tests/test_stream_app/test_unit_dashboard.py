"""The dashboard's pure state (`LineView`) and its HTTP routes, without services."""

from __future__ import annotations

import asyncio
import json
import re
from importlib import resources

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from stream_app.config import DashboardConfig, ValidationConfig, load_config
from stream_app.runtime.dashboard_server import STATIC_FILES, Dashboard
from stream_app.service.line_view import BadPrediction, LineView, parse_prediction
from stream_app.service.messages import EndMarker, Readings


def prediction(casting_id: str = "L1-S2-0001", n_steps: int = 4, p: float = 0.9, **fields) -> dict:
    attention = [0.1, 0.6, 0.2, 0.1][:n_steps] + [0.0] * max(0, n_steps - 4)
    doc = {"casting_id": casting_id, "defect_probability": p, "predicted_defect": p >= 0.5, "threshold": 0.5,
           "n_steps": n_steps, "attention": attention, "model_version": "v1-test", "scored_at":
           "2026-01-01T00:00:00.000+00:00", "latency_ms": 12.5, "gaps_filled": 0, "batch_size": 1}
    doc.update(fields)
    return doc


def view(**cfg) -> LineView:
    return LineView(DashboardConfig(**cfg), ValidationConfig(), started_s=0.0)


@pytest.mark.parametrize("raw", [
    None,
    b"not json",
    b"[]",
    json.dumps(prediction(defect_probability=1.5)).encode(),
    json.dumps(prediction(n_steps=4, attention=[0.5, 0.5])).encode(),
    json.dumps({k: v for k, v in prediction().items() if k != "model_version"}).encode(),
    json.dumps(prediction(casting_id="")).encode(),
])
def test_bad_predictions_are_refused(raw):
    with pytest.raises(BadPrediction):
        parse_prediction(raw)


def test_a_prediction_with_extra_fields_is_read():
    doc = parse_prediction(json.dumps(prediction(extra="x")).encode())
    assert doc.casting_id == "L1-S2-0001" and doc.predicted_defect


@pytest.mark.parametrize(("casting_id", "strand"), [
    ("L1-S2-0001", "S2"), ("S12_00042", "S12"), ("SIM-20260101-00001", None), ("CAST-7", None),
])
def test_strand_from_the_casting_id(casting_id, strand):
    assert view().strand_of(casting_id) == strand


def test_traces_and_attention_of_a_casting():
    v = view()
    rows = np.array([[1.2, 1520, 150, 200, 25], [1.3, 1521, 151, 201, 26]], dtype=np.float32)
    v.add_sensor(Readings("L1-S1-0001", 0, rows), now_s=1.0)
    v.add_sensor(Readings("L1-S1-0001", 3, rows[:1]), now_s=1.1)  # step 2 never arrives
    v.add_sensor(EndMarker("L1-S1-0001", 4), now_s=1.2)
    v.add_prediction(parse_prediction(json.dumps(prediction("L1-S1-0001")).encode()), now_s=2.0)
    detail = v.detail("L1-S1-0001")
    assert detail["n_steps"] == 4 and detail["strand"] == "S1"
    assert detail["traces"][0] == [pytest.approx(1.2), pytest.approx(1.3), None, pytest.approx(1.2)]
    assert [c["unit"] for c in detail["channels"]] == ["m/min", "degC", "mm", "L/min", "degC"]
    assert len(detail["attention"]) == 4 and detail["top_steps"][:2] == [1, 2]
    assert v.rows()[0]["steps_seen"] == 3


def test_memory_is_bounded_by_max_castings():
    v = view(max_castings=10)
    row = np.ones((1, 5), dtype=np.float32)
    for i in range(100):
        v.add_sensor(Readings(f"C-{i}", 0, row), now_s=float(i))
        v.add_prediction(parse_prediction(json.dumps(prediction(f"C-{i}", n_steps=1, attention=[1.0])).encode()),
                         now_s=float(i))
    assert len(v.castings) == 10
    assert [r["casting_id"] for r in v.rows()][:2] in (["C-99", "C-98"], ["C-98", "C-99"])
    assert v.detail("C-0") is None


def test_rows_since_a_sequence_number_and_newest_first():
    v = view()
    for i, t in enumerate(["2026-01-01T00:00:01.000+00:00", "2026-01-01T00:00:03.000+00:00",
                           "2026-01-01T00:00:02.000+00:00"]):
        v.add_prediction(parse_prediction(json.dumps(prediction(f"C-{i}", scored_at=t)).encode()), now_s=1.0)
    assert [r["casting_id"] for r in v.rows()] == ["C-1", "C-2", "C-0"]
    assert [r["casting_id"] for r in v.rows(since_seq=2)] == ["C-2"]


def test_rates():
    v = view()
    for i in range(10):
        doc = prediction(f"C-{i}", p=0.9 if i < 3 else 0.1, latency_ms=float(10 * (i + 1)))
        v.add_prediction(parse_prediction(json.dumps(doc).encode()), now_s=100.0 + i)
    v.add_deadletter("malformed_json")
    rates = v.rates(now_s=110.0)
    assert rates["castings_per_min"] == 10
    assert rates["defect_share"] == pytest.approx(0.3)
    assert rates["latency_p50_ms"] == pytest.approx(55.0)
    assert rates["deadletters"] == {"malformed_json": 1}
    assert rates["model_version"] == "v1-test"
    assert v.rates(now_s=1000.0)["castings_per_min"] == 0  # older than the rate window


def test_pending_castings_are_forgotten_after_their_ttl():
    v = view(pending_ttl_s=60)
    v.add_sensor(Readings("C-1", 0, np.ones((1, 5), dtype=np.float32)), now_s=0.0)
    assert v.forget_stale(now_s=30.0) == 0
    assert v.forget_stale(now_s=61.0) == 1 and not v.castings


def test_static_files_load_nothing_from_the_internet():
    folder = resources.files("stream_app.runtime").joinpath("static", "dashboard")
    for name in STATIC_FILES:
        text = folder.joinpath(name).read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE), name
        assert "@import" not in text and "@font-face" not in text


# ------------------------------------------------------------------ routes (no feed: the view is filled by hand)


@pytest.fixture
def dashboard_client():
    """A factory: a `Dashboard` with the given `dashboard` config section, served by aiohttp's test server
    (each test closes its client)."""

    async def make(**dashboard) -> tuple[Dashboard, TestClient]:
        board = Dashboard(load_config(environ={}, dashboard=dashboard))
        client = TestClient(TestServer(board.app(follow=False)))
        await client.start_server()
        return board, client

    return make


async def test_page_api_and_read_only(dashboard_client):
    board, client = await dashboard_client()
    try:
        board.view.add_prediction(parse_prediction(json.dumps(prediction("C-1")).encode()), now_s=1.0)
        page = await client.get("/")
        assert page.status == 200 and "static/app.js" in await page.text()
        for name in ("app.js", "style.css"):
            assert (await client.get(f"/static/{name}")).status == 200
        assert (await client.get("/static/../config.py")).status == 404
        assert [r["casting_id"] for r in await (await client.get("/api/castings")).json()] == ["C-1"]
        assert (await (await client.get("/api/castings/C-1")).json())["top_steps"][0] == 1
        assert (await client.get("/api/castings/nope")).status == 404
        for method in ("POST", "PUT", "DELETE"):
            assert (await client.request(method, "/api/castings/C-1")).status == 405
        assert "casting_dashboard_predictions_seen_total" in await (await client.get("/metrics")).text()
    finally:
        await client.close()


async def test_token_by_header_or_query(dashboard_client):
    board, client = await dashboard_client(token="s3cret")
    try:
        assert (await client.get("/")).status == 401
        assert (await client.get("/api/summary", headers={"Authorization": "Bearer wrong"})).status == 401
        assert (await client.get("/api/summary", headers={"Authorization": "Bearer s3cret"})).status == 200
        assert (await client.get("/?token=s3cret")).status == 200
        assert (await client.get("/health")).status in (200, 503)  # never needs the token
    finally:
        await client.close()


async def test_events_snapshot_then_updates_and_a_slow_client_is_dropped(dashboard_client):
    board, client = await dashboard_client()
    try:
        response = await client.get("/events")
        first = await response.content.readuntil(b"\n\n")
        assert first.startswith(b"event: snapshot")
        board.view.add_prediction(parse_prediction(json.dumps(prediction("C-9")).encode()), now_s=1.0)
        board.push_once()
        update = await response.content.readuntil(b"\n\n")
        assert update.startswith(b"event: update") and b"C-9" in update
        # a client that never reads: its queue fills, and it is dropped instead of growing memory
        for _ in range(100):
            board.push_once()
        await asyncio.sleep(0.2)
        assert len(board.clients) <= 1
        response.close()
        for _ in range(50):
            if not board.clients:
                break
            await asyncio.sleep(0.1)
        assert not board.clients
    finally:
        await client.close()


def test_the_lag_group_is_the_workers_ingest_group():
    from stream_app.runtime.dashboard_feed import worker_ingest_group
    from stream_app.runtime.ingest_loop import ingest_group_id

    cfg = load_config(environ={}, app_id="line-7")
    assert worker_ingest_group(cfg) == ingest_group_id(cfg)


def test_the_page_server_does_not_load_torch():
    import subprocess
    import sys

    code = "import sys, stream_app.runtime.dashboard_server; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() \
        == "False"


def test_cli_dashboard_and_devstack_prometheus_options():
    from click.testing import CliRunner

    from stream_app.cli import cli

    runner = CliRunner()
    out = runner.invoke(cli, ["dashboard", "--help"]).output
    assert "--host" in out and "--port" in out and "--max-castings" in out and "TOKEN" in out
    assert "--prometheus" in runner.invoke(cli, ["devstack", "up", "--help"]).output


def test_the_token_never_reaches_a_config_file(tmp_path):
    from stream_app.config import write_config

    cfg = load_config(environ={"STREAM_APP__DASHBOARD__TOKEN": "s3cret"})
    assert cfg.dashboard.token.get_secret_value() == "s3cret"
    text = write_config(cfg, tmp_path / "c.yaml").read_text()
    assert "s3cret" not in text and "token" not in text
    assert load_config(tmp_path / "c.yaml", environ={}).dashboard.token is None


def test_a_bad_strand_pattern_names_the_key():
    from stream_app.errors import ConfigError

    with pytest.raises(ConfigError, match="dashboard.strand_pattern"):
        load_config(environ={}, dashboard={"strand_pattern": "(S\\d+"})


def test_devstack_prometheus_config_scrapes_both_jobs_with_the_repository_rules(tmp_path):
    import yaml

    from stream_app.tools.devstack import PROMETHEUS_RULES, DevstackSettings, prometheus_config

    settings = DevstackSettings(root=tmp_path, worker_target="127.0.0.1:1234", dashboard_target="127.0.0.1:5678")
    doc = yaml.safe_load(prometheus_config(settings))
    assert doc["rule_files"] == [str(PROMETHEUS_RULES)] and PROMETHEUS_RULES.exists()
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in doc["scrape_configs"]}
    assert targets == {"casting-worker": ["127.0.0.1:1234"], "casting-dashboard": ["127.0.0.1:5678"]}
