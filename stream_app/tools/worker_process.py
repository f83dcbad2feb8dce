"""`stream-app worker` as a child process, for the demo, the tests and the benchmarks.

The child gets its configuration as a file (`write_config`, passed with ``--config``), never as
``STREAM_APP__*`` variables: the parent's non-secret ``STREAM_APP__*`` variables are left out of its
environment, so the file is the whole config. Secrets never touch the disk: the child inherits them
from the environment (and gets the parent config's own secrets the same way). The metrics port is
part of the config the child is given.

    with WorkerProcess(cfg, Path("runs/worker.log")) as worker:   # started; stopped on leaving
        worker.wait_for(worker.ready, "the worker to be ready")
        print(worker.metric("casting_castings_scored_total"))
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from stream_app.config import ENV_PREFIX, StreamConfig, write_config
from stream_app.errors import StreamAppError

#: the only ``STREAM_APP__*`` variables a child inherits: the secrets `write_config` leaves out
SECRET_VARIABLES = (f"{ENV_PREFIX}KAFKA__SASL_PASSWORD", f"{ENV_PREFIX}REDIS__PASSWORD")


class WorkerProcessError(StreamAppError):
    """The worker process exited, did not start, or a condition waited for did not come; carries its log."""


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WorkerProcess:
    """One `stream-app worker` child process, restartable; its log is appended across restarts.

    `log_path` None: the log, the config file and faust's data folder go to a temporary folder that
    `close()` (or leaving the ``with`` block) removes. `metrics_port` None: a free port. `entry`: another
    command with the worker's CLI (``--config``, ``--datadir``), e.g. a patched worker for a baseline.
    `env`: extra environment variables that are not config (config goes into `cfg`).
    `new_session`: the child gets its own session, so a Ctrl-C in the parent's terminal does not reach it.
    """

    def __init__(self, cfg: StreamConfig, log_path: Path | str | None = None, *, metrics_port: int | None = None,
                 datadir: Path | str | None = None, entry: Sequence[str] | None = None,
                 env: Mapping[str, str] | None = None, cwd: Path | str | None = None,
                 new_session: bool = False) -> None:
        config_vars = sorted(name for name in (env or {}) if name.startswith(ENV_PREFIX))
        if config_vars:
            raise ValueError(f"config goes into cfg, not the environment: {', '.join(config_vars)}")
        self._own_dir: Path | None = None
        if log_path is None:
            self._own_dir = Path(tempfile.mkdtemp(prefix=f"{cfg.app_id}-"))
            log_path = self._own_dir / "worker.log"
        self.log_path = Path(log_path)
        self.config_path = self.log_path.with_name(f"{self.log_path.stem}.config.yaml")
        self.datadir = Path(datadir) if datadir is not None else self.log_path.with_name(f"{self.log_path.stem}.faust")
        self.metrics_port = metrics_port or free_port()
        self.cfg = cfg
        self.entry = list(entry or [sys.executable, "-m", "stream_app.cli", "worker"])
        self.env = dict(env or {})
        self.cwd = cwd
        self.new_session = new_session
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    # ------------------------------------------------------------------ process
    @property
    def port(self) -> int:
        return self.metrics_port

    @property
    def child_config(self) -> StreamConfig:
        """What the child runs with: `cfg`, with the metrics port this harness talks to."""
        return self.cfg.model_copy(update={"metrics": self.cfg.metrics.model_copy(update={"port": self.metrics_port})})

    def child_env(self) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items()
               if not name.startswith(ENV_PREFIX) or name in SECRET_VARIABLES}
        secrets = {SECRET_VARIABLES[0]: self.cfg.kafka.sasl_password, SECRET_VARIABLES[1]: self.cfg.redis.password}
        env.update({name: secret.get_secret_value() for name, secret in secrets.items() if secret is not None})
        env.update(self.env)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self) -> WorkerProcess:
        """Start the process (again after `kill`/`terminate`: same port, same log, appended)."""
        if self.alive():
            raise WorkerProcessError(f"worker already running (pid {self.proc.pid})")  # type: ignore[union-attr]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        write_config(self.child_config, self.config_path)
        self.starts += 1
        with self.log_path.open("ab") as log_file:
            log_file.write(f"\n===== start {self.starts} =====\n".encode())
            log_file.flush()
            self.proc = subprocess.Popen(
                [*self.entry, "--config", str(self.config_path), "--datadir", str(self.datadir)],
                env=self.child_env(), stdout=log_file, stderr=subprocess.STDOUT, cwd=self.cwd,
                start_new_session=self.new_session,
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def kill(self, sig: int = signal.SIGKILL, timeout_s: float = 60) -> int | None:
        """Send `sig` (default SIGKILL) and wait for the exit; the exit code, None if it did not exit in time.
        A process that is not running is left alone (its last exit code is returned)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def terminate(self, timeout_s: float = 60) -> int:
        """SIGTERM and the exit code; fails (after a SIGKILL) if the worker does not exit within `timeout_s`."""
        if self.proc is None:
            self.fail("terminate: the worker was never started")
        code = self.kill(signal.SIGTERM, timeout_s)
        if code is None:
            self.kill(signal.SIGKILL)
            self.fail(f"the worker did not exit within {timeout_s:g}s of SIGTERM (killed):\n{self.log_tail()}")
        return code  # type: ignore[return-value]

    def stop(self, grace_s: float = 30) -> int | None:
        """SIGTERM, then SIGKILL after `grace_s`; the exit code (None if never started)."""
        code = self.kill(signal.SIGTERM, grace_s)
        if code is None and self.alive():
            code = self.kill(signal.SIGKILL)
        return code

    def close(self) -> None:
        """Stop it, and remove the temporary folder it made (if it made one)."""
        self.stop()
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ what it says
    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def url(self, path: str = "") -> str:
        """The worker's HTTP address (`/metrics`, `/health`), as seen from this machine."""
        host = self.cfg.metrics.host
        host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.metrics_port}{path}"

    def metrics_text(self) -> str:
        """The `/metrics` page; raises OSError while the endpoint is not up."""
        with urllib.request.urlopen(self.url("/metrics"), timeout=5) as reply:
            return reply.read().decode()

    def metric(self, name: str) -> float:
        """One series' value, the sum over its labelled children; 0 while the endpoint is not up or the
        series has no sample yet."""
        try:
            text = self.metrics_text()
        except OSError:
            return 0.0
        pattern = rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$"
        return sum(float(m.group(1)) for m in re.finditer(pattern, text, re.MULTILINE))

    def health(self) -> tuple[int, dict]:
        """(HTTP status, body) of `/health`; (0, {}) while the endpoint is not up."""
        try:
            with urllib.request.urlopen(self.url("/health"), timeout=5) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read())
            finally:
                exc.close()
        except (OSError, ValueError):
            return 0, {}

    def ready(self) -> bool:
        """`/health` answers 200."""
        return self.health()[0] == 200

    # ------------------------------------------------------------------ waiting
    def fail(self, message: str):
        """How this harness reports a failure (the tests' subclass turns it into a test failure)."""
        raise WorkerProcessError(message)

    def check_alive(self) -> None:
        if not self.alive():
            self.fail(f"worker exited (code {self.returncode}):\n{self.log_tail()}")

    def wait_for(self, condition: Callable[[], bool], what: str, timeout_s: float = 120,
                 interval_s: float = 0.1) -> None:
        """Poll `condition` until it holds; fail with the log's tail if the worker exits or time runs out."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            if not self.alive():
                self.fail(f"worker exited (code {self.returncode}) while waiting for {what}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.fail(f"timed out after {timeout_s:g}s waiting for {what}:\n{self.log_tail()}")
            time.sleep(interval_s)
