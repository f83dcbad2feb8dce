"""The compose stack as the host sees it: podman-compose and podman for the containers, the broker through
the compose file's host listener (KAFKA_HOST_PORT), the worker through its published port (WORKER_METRICS_PORT)."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stream_app.config import StreamConfig, load_config

#: bytes held in a hash's values (a window's rows)
_HELD_BYTES = "local n = 0 for _, v in ipairs(redis.call('HVALS', KEYS[1])) do n = n + #v end return n"


class ComposeError(AssertionError):
    """A compose or podman command failed, or a wait ran out; the message carries its output."""


@dataclass(frozen=True)
class ComposeStack:
    project: str
    compose_file: Path
    kafka_host_port: int
    worker_metrics_port: int

    def compose(self, *args: str, timeout_s: float = 600) -> str:
        return self._run(["podman-compose", "-p", self.project, "-f", str(self.compose_file), *args], timeout_s)

    def podman(self, *args: str, timeout_s: float = 120) -> str:
        return self._run(["podman", *args], timeout_s)

    @staticmethod
    def _run(cmd: list[str], timeout_s: float) -> str:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        if result.returncode != 0:
            raise ComposeError(f"{' '.join(cmd)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def container(self, service: str) -> str:
        """podman-compose's name for the service's container."""
        return f"{self.project}_{service}_1"

    def config(self) -> StreamConfig:
        """The worker's config (the defaults, as in its container), with the broker as the host reaches it."""
        return load_config(environ={"STREAM_APP__KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{self.kafka_host_port}"})

    def healthy(self, service: str) -> bool:
        """Runs the service's compose health check now (podman runs health checks on a timer only under
        systemd, so nothing else may have run it)."""
        result = subprocess.run(["podman", "healthcheck", "run", self.container(service)],
                                capture_output=True, text=True, timeout=60)
        return result.returncode == 0

    def wait_healthy(self, service: str, timeout_s: float = 300) -> None:
        wait_until(lambda: self.healthy(service), f"{service} healthy", timeout_s)

    def restart_count(self, service: str) -> int:
        return int(self.podman("inspect", "-f", "{{.RestartCount}}", self.container(service)).strip())

    def metric(self, name: str) -> float:
        """One series of the worker's /metrics, summed over its labels; 0 while the worker is not up."""
        try:
            url = f"http://127.0.0.1:{self.worker_metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as reply:
                text = reply.read().decode()
        except OSError:
            return 0.0
        pattern = rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$"
        return sum(float(m.group(1)) for m in re.finditer(pattern, text, re.MULTILINE))

    def redis_cli(self, *args: str) -> str:
        return self.podman("exec", self.container("redis"), "redis-cli", *args)

    def window_lengths(self, prefix: str, casting_prefix: str, n_channels: int = 5) -> dict[str, int]:
        """Readings buffered per casting for the castings whose id starts so. A window key carries its casting
        id as a hash tag, `{prefix}:win:{<id>}` (`RedisWindowStore.window_key`); its fields are runs, a
        message's first step -> its float32 rows, so the readings are the bytes held / (4 * channels)."""
        keys = self.redis_cli("--scan", "--pattern", f"{prefix}:win:{{{casting_prefix}*").split()
        return {key.rsplit(":", 1)[-1].strip("{}"): int(self.redis_cli("EVAL", _HELD_BYTES, "1", key).strip())
                // (4 * n_channels) for key in keys}


def wait_until(check: Callable[[], bool], what: str, timeout_s: float, poll_s: float = 1.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise ComposeError(f"timed out after {timeout_s:.0f}s waiting for: {what}")
        time.sleep(poll_s)
