"""`stream-app dashboard` as a child process, for the demo, the tests and the benchmark.

Like `WorkerProcess`: the child gets its config as a file (secrets, the token included, through the
environment only), a free port unless one is given, and its log in a file.

    with DashboardProcess(cfg, Path("runs/dashboard.log")) as page:   # started and ready; stopped on leaving
        print(page.url())
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from stream_app.config import ENV_PREFIX, StreamConfig, write_config
from stream_app.tools.worker_process import SECRET_VARIABLES, WorkerProcessError, free_port

TOKEN_VARIABLE = f"{ENV_PREFIX}DASHBOARD__TOKEN"


class DashboardProcess:
    def __init__(self, cfg: StreamConfig, log_path: Path | str, *, port: int | None = None,
                 new_session: bool = False) -> None:
        self.port = port or free_port()
        self.cfg = cfg.model_copy(update={"dashboard": cfg.dashboard.model_copy(update={"port": self.port})})
        self.log_path = Path(log_path)
        self.config_path = self.log_path.with_name(f"{self.log_path.stem}.config.yaml")
        self.new_session = new_session
        self.proc: subprocess.Popen | None = None

    def child_env(self) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items()
               if not name.startswith(ENV_PREFIX) or name in SECRET_VARIABLES}
        secrets = {SECRET_VARIABLES[0]: self.cfg.kafka.sasl_password, TOKEN_VARIABLE: self.cfg.dashboard.token}
        env.update({name: s.get_secret_value() for name, s in secrets.items() if s is not None})
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self, ready_timeout_s: float = 90) -> DashboardProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        write_config(self.cfg, self.config_path)
        with self.log_path.open("ab") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stream_app.cli", "dashboard", "--config", str(self.config_path)],
                env=self.child_env(), stdout=log_file, stderr=subprocess.STDOUT, start_new_session=self.new_session,
            )
        self.wait_for(lambda: self.health()[0] == 200, "the dashboard to reach the broker", ready_timeout_s)
        return self

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def health(self) -> tuple[int, dict]:
        """(HTTP status, body) of /health; (0, {}) while it does not answer."""
        try:
            with urllib.request.urlopen(self.url("/health"), timeout=5) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read() or b"{}")
        except (OSError, ValueError):
            return 0, {}

    def get_json(self, path: str) -> object:
        request = urllib.request.Request(self.url(path))
        if self.cfg.dashboard.token is not None:
            request.add_header("Authorization", f"Bearer {self.cfg.dashboard.token.get_secret_value()}")
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.loads(reply.read())

    def rss_bytes(self) -> int:
        """Resident memory of the server process (Linux /proc)."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise WorkerProcessError("no VmRSS line")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_for(self, condition, what: str, timeout_s: float = 60, interval_s: float = 0.2) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if not self.alive():
                raise WorkerProcessError(f"the dashboard exited while waiting for {what}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise WorkerProcessError(f"timed out after {timeout_s:g}s waiting for {what}:\n{self.log_tail()}")
            time.sleep(interval_s)

    def stop(self, grace_s: float = 20) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)

    def __enter__(self) -> DashboardProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
