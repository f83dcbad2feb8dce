"""The control-room page's server under 10,000 castings: its memory, and how soon a prediction reaches a browser.

A real `stream-app dashboard` process follows bench topics; this script produces each casting's readings
(chunks of 50) and then a prediction record for it (the worker's contract, `scored_at` = the moment it is
sent), at a steady rate, while one live-stream client (the page's /events, as a browser reads it) records
when each casting arrives. The worker is not involved: scoring 10k castings would take the machine's CPU
away from what is measured here (the page's side of the flow; the browser test covers the whole flow).

    .venv/bin/python bench/bench_dashboard.py --castings 10000 [--max-castings 500] [--doc]
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, create_topics, delete_topics, median, unique_name, write_doc_block  # noqa: E402

from stream_app.config import load_config  # noqa: E402
from stream_app.tools.dashboard_process import DashboardProcess  # noqa: E402
from stream_app.tools.simulate import casting_messages, load_castings  # noqa: E402


class StreamClient(threading.Thread):
    """Reads /events like a browser: records when each casting id first arrives."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.arrived: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
            sock.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
            buffer = b""
            while not self.stop.is_set():
                chunk = sock.recv(1 << 20)
                if not chunk:
                    return
                buffer += chunk
                while b"\n\n" in buffer:
                    event, buffer = buffer.split(b"\n\n", 1)
                    now = time.time()
                    for line in event.split(b"\n"):
                        if line.startswith(b"data: "):
                            for row in json.loads(line[6:]).get("rows", []):
                                self.arrived.setdefault(row["casting_id"], now)


def prediction(casting_id: str, n_steps: int, rng: np.random.Generator) -> bytes:
    attention = rng.random(n_steps)
    attention /= attention.sum()
    p = float(rng.random())
    return json.dumps({
        "casting_id": casting_id, "defect_probability": round(p, 7), "predicted_defect": p >= 0.87,
        "threshold": 0.87, "n_steps": n_steps, "attention": np.round(attention, 6).tolist(), "model_version": "bench",
        "gaps_filled": 0, "scored_at": datetime.now(UTC).isoformat(timespec="milliseconds"), "latency_ms": 50.0,
        "batch_size": 1,
    }).encode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--castings", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=200.0, help="castings per second")
    parser.add_argument("--max-castings", type=int, default=500, help="dashboard.max_castings")
    parser.add_argument("--doc", action="store_true", help="write the table into docs/BENCHMARKS.md")
    args = parser.parse_args(argv)

    from kafka import KafkaProducer

    from stream_app.runtime.connections import kafka_python_kwargs

    app_id = unique_name("dashboard")
    # the environment's broker (STREAM_APP__KAFKA__*), this run's own topics
    cfg = load_config(app_id=app_id, dashboard={"max_castings": args.max_castings},
                      topics={"sensors": f"{app_id}.sensors", "predictions": f"{app_id}.predictions",
                              "deadletter": f"{app_id}.deadletter"})
    create_topics(cfg)
    shapes = load_castings(count=200, seed=1, prefix="shape", channels=cfg.validation.channels)  # re-used, new ids
    rng = np.random.default_rng(0)
    log_dir = ROOT / "runs" / "bench-dashboard"
    page = DashboardProcess(cfg, log_dir / "dashboard.log")
    try:
        page.start()
        rss_start = page.rss_bytes()
        client = StreamClient(page.port)
        client.start()
        producer = KafkaProducer(**kafka_python_kwargs(cfg.kafka), linger_ms=5, max_request_size=8 << 20, acks=1)
        sent_at: dict[str, float] = {}
        began = time.monotonic()
        rss_samples = []
        for i in range(args.castings):
            shape = shapes[i % len(shapes)]
            cid = f"B-S{i % 4 + 1}-{i:06d}"
            for message in casting_messages(cid, shape.values, chunk_size=50):
                producer.send(cfg.topics.sensors, key=cid.encode(), value=message)
            producer.send(cfg.topics.predictions, key=cid.encode(), value=prediction(cid, len(shape.values), rng))
            sent_at[cid] = time.time()
            ahead = (i + 1) / args.rate - (time.monotonic() - began)
            if ahead > 0:
                producer.flush()
                time.sleep(ahead)
            if (i + 1) % 1000 == 0:
                rss_samples.append(page.rss_bytes())
                print(f"{i + 1} castings sent, server RSS {rss_samples[-1] / 2**20:.1f} MiB, "
                      f"{len(client.arrived)} arrived at the client")
        producer.flush()
        producer.close()
        sent_s = time.monotonic() - began
        deadline = time.monotonic() + 120
        while len(client.arrived) < args.castings and time.monotonic() < deadline:
            time.sleep(0.5)
        rss_end = page.rss_bytes()
        summary = page.get_json("/api/summary")
        delays = sorted(client.arrived[c] - sent_at[c] for c in client.arrived if c in sent_at)
        client.stop.set()
    finally:
        page.stop()
        delete_topics(cfg, app_id)

    def p(q: float) -> float:
        return delays[min(len(delays) - 1, int(q * len(delays)))] if delays else float("nan")

    lines = [
        "| | |", "|---|---|",
        f"| castings sent (readings in chunks of 50, then a prediction) | {args.castings:,} in {sent_s:.0f} s "
        f"({args.castings / sent_s:.0f}/s; asked for at most {args.rate:g}/s) |",
        f"| dashboard.max_castings | {args.max_castings} (kept at the end: {summary['castings_kept']}) |",
        f"| server RSS at start | {rss_start / 2**20:.1f} MiB |",
        "| server RSS after 1k / 5k / 10k castings | "
        + " / ".join(f"{rss_samples[k] / 2**20:.1f}" for k in (0, 4, 9) if k < len(rss_samples)) + " MiB |",
        f"| server RSS at the end | {rss_end / 2**20:.1f} MiB |",
        f"| castings that reached the live-stream client | {len(client.arrived):,} of {args.castings:,} |",
        f"| prediction sent -> at the client: median / p99 / max | {median(delays):.2f} / {p(0.99):.2f} / "
        f"{(delays[-1] if delays else float('nan')):.2f} s |",
    ]
    print("\n".join(lines))
    if args.doc:
        write_doc_block("dashboard", lines, argv)
    return 0 if len(client.arrived) == args.castings else 1


if __name__ == "__main__":
    sys.exit(main())
