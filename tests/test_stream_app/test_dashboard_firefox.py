"""The control-room page in Firefox too (Debian's firefox-esr, headless, over WebDriver BiDi), against real
Kafka, Redis, a worker and the simulator: castings arrive by server push, defects are marked, and a selected
casting draws every channel and the attention band with one cell per step.

The screenshot goes to runs/test-artifacts/dashboard/firefox-selected.png (printed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stream_app.tools.dashboard_process import DashboardProcess
from stream_app.tools.simulate import Casting, run_simulation
from tests.test_stream_app.firefox_bidi import FirefoxPage
from tests.test_stream_app.harness import make_castings, offline_probabilities

pytestmark = [pytest.mark.integration, pytest.mark.host_tools]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "runs" / "test-artifacts" / "dashboard"
CHECKPOINT = ROOT / "checkpoints" / "default" / "model.pt"
N_CASTINGS = 8
ROWS = "document.querySelectorAll('#castings tbody tr')"


def test_page_works_in_firefox(service_config, worker_factory, reader_factory, tmp_path):
    raw = make_castings(N_CASTINGS, seed=5, prefix="x")
    castings = [Casting(f"L2-S{i % 2 + 1}-{i:04d}", c.values) for i, c in enumerate(raw)]
    reference = offline_probabilities(CHECKPOINT, {c.casting_id: c.values for c in castings})
    threshold = float(np.median(list(reference.values())))  # both verdicts on the page
    cfg = service_config(model={"checkpoint": str(CHECKPOINT), "threshold": threshold})

    with DashboardProcess(cfg, tmp_path / "dashboard.log") as page, FirefoxPage() as firefox:
        worker = worker_factory(cfg).start()
        worker.wait_for(worker.ready, "the worker to be ready")
        firefox.open(page.url())
        firefox.wait_for("document.getElementById('connection').textContent === 'live'", "the live stream")
        predictions = reader_factory(cfg, cfg.topics.predictions)
        run_simulation(cfg, castings, strands=2, chunk_size=10, seed=3, progress=False)

        firefox.wait_for(f"{ROWS}.length >= {N_CASTINGS}", f"{N_CASTINGS} rows", timeout_s=180)
        predictions.read_distinct_keys(N_CASTINGS, timeout_s=30)
        by_id = {p["casting_id"]: p for p in predictions.json()}
        shown = firefox.evaluate(f"Array.from({ROWS}).map(r => [r.dataset.castingId, r.classList.contains('defect')])")
        assert {cid for cid, _ in shown} == set(by_id)
        predicted = {cid for cid, p in by_id.items() if p["predicted_defect"]}
        assert predicted and predicted != set(by_id)
        assert {cid for cid, defect in shown if defect} == predicted

        defect_id = sorted(predicted)[0]
        firefox.evaluate(f"document.querySelector('tr[data-casting-id=\"{defect_id}\"]').click()")
        firefox.wait_for(f"document.getElementById('detail').dataset.castingId === '{defect_id}'",
                         "the selected casting's charts")
        n_steps = by_id[defect_id]["n_steps"]
        traces = firefox.evaluate(
            "Array.from(document.querySelectorAll('#traces canvas.trace'))"
            ".map(t => [t.dataset.channel, t.dataset.steps, t.dataset.drawnPoints])"
        )
        assert [t[0] for t in traces] == [c.name for c in cfg.validation.channels]
        assert {(t[1], t[2]) for t in traces} == {(str(n_steps), str(n_steps))}
        assert firefox.evaluate("document.getElementById('attention-band').dataset.steps") == str(n_steps)
        print(f"screenshot: {firefox.screenshot(ARTIFACTS / 'firefox-selected.png')}")
        worker.stop()
