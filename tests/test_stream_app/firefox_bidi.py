"""Drive Debian's headless Firefox over WebDriver BiDi, the protocol Firefox speaks itself.

Selenium needs geckodriver for Firefox, and no package here carries it (Debian has none; PyPI and npm
only download it from GitHub). Firefox has served WebDriver BiDi on `--remote-debugging-port` since
version 129, so a test can open a page, run a script in it and take a screenshot with a WebSocket and
five commands, which is all the page test needs.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import websocket


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FirefoxPage:
    """One headless Firefox with one tab; `evaluate` returns the JSON value of an expression."""

    def __init__(self, width: int = 1920, height: int = 1080, start_timeout_s: float = 60) -> None:
        binary = shutil.which("firefox-esr") or shutil.which("firefox")
        if binary is None:
            raise RuntimeError("firefox-esr is needed (scripts/install-system-deps.sh installs it)")
        self._profile = tempfile.TemporaryDirectory(prefix="ff-profile-")
        self._log = open(Path(self._profile.name) / "firefox.log", "wb")  # noqa: SIM115 - closed in close()
        port = _free_port()
        self._process = subprocess.Popen(
            [binary, "--headless", "--no-remote", "--profile", self._profile.name,
             "--remote-debugging-port", str(port), "about:blank"],
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        self._ids = itertools.count(1)
        self._ws = self._connect(port, start_timeout_s)
        self.call("session.new", capabilities={})
        self.context = self.call("browsingContext.getTree")["contexts"][0]["context"]
        self.set_viewport(width, height)

    def _connect(self, port: int, timeout_s: float) -> websocket.WebSocket:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                # Firefox refuses a handshake that carries an Origin header
                return websocket.create_connection(f"ws://127.0.0.1:{port}/session", timeout=30, suppress_origin=True)
            except (OSError, websocket.WebSocketException):
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"firefox did not open WebDriver BiDi on port {port}") from None
                time.sleep(0.25)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        command_id = next(self._ids)
        self._ws.send(json.dumps({"id": command_id, "method": method, "params": params}))
        while True:  # events for other subscriptions may come first
            message = json.loads(self._ws.recv())
            if message.get("id") == command_id:
                if message.get("type") == "error":
                    raise RuntimeError(f"{method}: {message.get('error')}: {message.get('message')}")
                return message["result"]

    def set_viewport(self, width: int, height: int) -> None:
        self.call("browsingContext.setViewport", context=self.context, viewport={"width": width, "height": height})

    def open(self, url: str) -> None:
        self.call("browsingContext.navigate", context=self.context, url=url, wait="complete")

    def evaluate(self, expression: str) -> Any:
        """The expression's value, passed through JSON.stringify in the page (so lists and dicts come back)."""
        result = self.call("script.evaluate", expression=f"JSON.stringify({expression})",
                           target={"context": self.context}, awaitPromise=False)
        if result.get("type") == "exception":
            raise RuntimeError(f"{expression}: {result['exceptionDetails'].get('text')}")
        value = result["result"].get("value")
        return None if value is None else json.loads(value)

    def wait_for(self, expression: str, what: str, timeout_s: float = 60) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"firefox: waited {timeout_s:.0f}s for {what}")
            time.sleep(0.1)

    def screenshot(self, path: Path) -> Path:
        data = self.call("browsingContext.captureScreenshot", context=self.context)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            if getattr(self, "_ws", None) is not None:
                self._ws.close()
        finally:
            self._process.terminate()
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._log.close()
            self._profile.cleanup()

    def __enter__(self) -> FirefoxPage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
