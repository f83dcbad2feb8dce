"""The ops view: the alerting rules pass `promtool check rules`, and a real Prometheus (Debian's, started by
the devstack code) scrapes a real worker and the dashboard's server; when the worker stops while castings
keep arriving, "no predictions while readings arrive" fires (windows shortened in a test copy of the rules)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from stream_app.tools import devstack
from stream_app.tools.dashboard_process import DashboardProcess
from stream_app.tools.simulate import load_castings, run_simulation
from stream_app.tools.worker_process import free_port

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "configs" / "prometheus-alerts.yml"
ALERTS = {"CastingWorkerDown", "CastingDeadLetterRate", "CastingSensorLagGrowing", "CastingLatencyP99High",
          "CastingNoPredictionsWhileReadingsArrive"}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: install Debian's prometheus package (scripts/install-system-deps.sh)")
    return path


def check_rules(path: Path) -> str:
    result = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_alerting_rules_pass_promtool():
    out = check_rules(RULES)
    assert f"SUCCESS: {len(ALERTS)} rules found" in out
    assert set(re.findall(r"alert: (\w+)", RULES.read_text())) == ALERTS


def shortened_rules(target: Path) -> Path:
    """The same expressions with windows of seconds and `for:` of 2 s, so a test sees them fire."""
    text = RULES.read_text()
    text = re.sub(r"\[(5|10)m\]", "[15s]", text)
    text = re.sub(r"for: \w+", "for: 2s", text)
    target.write_text(text)
    check_rules(target)
    return target


def query(settings: devstack.DevstackSettings, path: str, **params) -> dict:
    url = f"{settings.prometheus_url}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as reply:
        doc = json.loads(reply.read())
    assert doc["status"] == "success", doc
    return doc["data"]


def firing(settings: devstack.DevstackSettings) -> set[str]:
    return {a["labels"]["alertname"] for a in query(settings, "/api/v1/alerts")["alerts"] if a["state"] == "firing"}


def wait_until(condition, what: str, timeout_s: float, *, interval_s: float = 1.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:g}s waiting for {what}"
        time.sleep(interval_s)


@pytest.mark.integration
@pytest.mark.host_tools
@pytest.mark.filterwarnings("ignore:subprocess .* is still running:ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_prometheus_scrapes_the_worker_and_alerts_when_predictions_stop(service_config, worker_factory, tmp_path):
    cfg = service_config()
    stop = threading.Event()
    producer = None
    with DashboardProcess(cfg, tmp_path / "dashboard.log") as page:
        worker = worker_factory(cfg).start()
        worker.wait_for(worker.ready, "the worker to be ready")
        settings = devstack.DevstackSettings(
            root=tmp_path / "ops", prometheus_port=free_port(), worker_target=f"127.0.0.1:{worker.port}",
            dashboard_target=f"127.0.0.1:{page.port}", prometheus_rules=shortened_rules(tmp_path / "rules.yml"),
            prometheus_interval_s=1.0,
        )
        devstack.start_prometheus(settings)
        try:
            # castings keep coming, a few per second, for the whole test
            castings = load_castings(count=400, seed=3, prefix=f"{cfg.app_id}-L1-S1",
                                     channels=cfg.validation.channels)
            producer = threading.Thread(target=run_simulation, args=(cfg, castings), daemon=True,
                                        kwargs={"strands": 2, "rate_per_s": 60.0, "chunk_size": 25,
                                                "progress": False, "stop": stop})
            producer.start()

            def scored() -> bool:
                result = query(settings, "/api/v1/query", query='casting_castings_scored_total{job="casting-worker"}')
                return bool(result["result"]) and float(result["result"][0]["value"][1]) > 0

            wait_until(scored, "the worker's scored castings in Prometheus", 120)
            expected = {"casting_end_to_end_latency_seconds_bucket", "casting_deadletters_total",
                        "casting_dashboard_predictions_seen_total", "casting_sensor_topic_lag_records"}
            # the lag series appears once the worker's group has committed and the dashboard has asked
            wait_until(lambda: expected <= set(query(settings, "/api/v1/label/__name__/values")),
                       f"the series {sorted(expected)}", 60)
            assert "CastingNoPredictionsWhileReadingsArrive" not in firing(settings)
            for expr in grafana_expressions():  # every panel of the Grafana dashboard is a valid query
                query(settings, "/api/v1/query", query=expr)

            worker.terminate()
            wait_until(lambda: {"CastingNoPredictionsWhileReadingsArrive", "CastingWorkerDown"} <= firing(settings),
                       "the no-predictions and worker-down alerts to fire", 120)
            assert producer.is_alive(), "readings were still arriving when the alert fired"
        finally:
            stop.set()
            if producer is not None:
                producer.join(timeout=30)
            devstack.stop_prometheus(settings)


def test_compose_ops_profile_mounts_files_that_exist():
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in ("prometheus", "grafana"):
        assert compose[name]["profiles"] == ["ops"]
        assert compose[name]["image"].startswith("${")  # overridable (locally built or mirrored images)
        for volume in compose[name]["volumes"]:
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), volume
    jobs = {job["job_name"] for job in yaml.safe_load((ROOT / "configs" / "prometheus.yml").read_text())[
        "scrape_configs"]}
    assert jobs == {"casting-worker", "casting-dashboard"}
    assert jobs == set(re.findall(r"job_name: ([\w-]+)", devstack.prometheus_config(devstack.DevstackSettings(
        root=ROOT / ".devstack"))))


def grafana_expressions() -> list[str]:
    doc = json.loads((ROOT / "configs" / "grafana" / "dashboards" / "casting-defect.json").read_text())
    return [target["expr"] for panel in doc["panels"] for target in panel["targets"]]
