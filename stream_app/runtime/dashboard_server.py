"""`stream-app dashboard`: the control-room page, served by aiohttp with server-sent events.

    GET /                      the page (HTML, script and style from the package: nothing from the internet)
    GET /static/<file>         the page's script and style
    GET /events                server-sent events: `snapshot` on connect, then `update` (new rows + rates)
    GET /api/castings          scored castings, newest first (JSON)
    GET /api/castings/<id>     one casting: every channel's trace, the attention and its top steps (JSON)
    GET /api/summary           the rates (JSON)
    GET /metrics               the dashboard's Prometheus metrics
    GET /health                200 while the feed reaches the broker, else 503 (never needs the token)

Read-only: there is no route that changes anything. With `dashboard.token` set, every route but /health
needs ``Authorization: Bearer <token>`` or ``?token=<token>`` (the page passes its own ``?token=`` on).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import signal
import time
from dataclasses import dataclass, field
from importlib import resources

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream_app.config import StreamConfig
from stream_app.runtime.dashboard_feed import LineFeed
from stream_app.runtime.dashboard_metrics import DashboardMetrics
from stream_app.service.line_view import LineView

log = logging.getLogger(__name__)

STATIC_FILES = {"app.js": "text/javascript", "style.css": "text/css", "index.html": "text/html"}
CLIENT_QUEUE_EVENTS = 32  # a browser this many updates behind is too slow: it is disconnected (it reconnects)
SNAPSHOT_ROWS = 500
STALE_SWEEP_S = 30.0


def _static(name: str) -> bytes:
    return resources.files("stream_app.runtime").joinpath("static", "dashboard", name).read_bytes()


def sse_event(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@dataclass
class Dashboard:
    """The page's state, its feed and its clients; `app()` is the aiohttp application."""

    cfg: StreamConfig
    metrics: DashboardMetrics = field(default_factory=DashboardMetrics)
    clients: set[asyncio.Queue] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.view = LineView(self.cfg.dashboard, self.cfg.validation, started_s=time.time())
        self.feed = LineFeed(self.cfg, self.view, self.metrics)
        self.static = {name: _static(name) for name in STATIC_FILES}  # read once: a missing file fails at start
        self._pushed_seq = 0

    # ------------------------------------------------------------------ application
    def app(self, follow: bool = True) -> web.Application:
        """`follow` False: no feed and no pushes (the unit tests drive the view themselves)."""
        app = web.Application(middlewares=[self._token_middleware])
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._static_file)
        app.router.add_get("/events", self._events)
        app.router.add_get("/api/castings", self._castings)
        app.router.add_get("/api/castings/{casting_id}", self._casting)
        app.router.add_get("/api/summary", self._summary)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health", self._health)
        if follow:
            app.cleanup_ctx.append(self._background)
        return app

    async def _background(self, app: web.Application):
        tasks = [asyncio.create_task(self.feed.run(), name="dashboard-feed"),
                 asyncio.create_task(self._push_loop(), name="dashboard-push")]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @web.middleware
    async def _token_middleware(self, request: web.Request, handler):
        token = self.cfg.dashboard.token
        if token is None or request.path == "/health":
            return await handler(request)
        given = request.query.get("token", "")
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = auth[len("Bearer "):]
        if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
            raise web.HTTPUnauthorized(text="a token is needed: Authorization: Bearer <token> or ?token=<token>\n")
        return await handler(request)

    # ------------------------------------------------------------------ routes
    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(body=self.static["index.html"], content_type="text/html", charset="utf-8")

    async def _static_file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC_FILES:
            raise web.HTTPNotFound()
        return web.Response(body=self.static[name], content_type=STATIC_FILES[name], charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    async def _castings(self, request: web.Request) -> web.Response:
        return web.json_response(self.view.rows(limit=SNAPSHOT_ROWS))

    async def _casting(self, request: web.Request) -> web.Response:
        detail = self.view.detail(request.match_info["casting_id"])
        if detail is None:
            raise web.HTTPNotFound(text="casting not kept (unknown, or older than the last max_castings)\n")
        return web.json_response(detail)

    async def _summary(self, request: web.Request) -> web.Response:
        return web.json_response(self.summary())

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _health(self, request: web.Request) -> web.Response:
        body = {"ready": self.feed.connected, "clients": len(self.clients), "castings": len(self.view.castings)}
        return web.json_response(body, status=200 if self.feed.connected else 503)

    def summary(self) -> dict:
        return {**self.view.rates(time.time()), "connected": self.feed.connected}

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if len(self.clients) >= self.cfg.dashboard.max_clients:
            raise web.HTTPServiceUnavailable(text="too many clients\n")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        queue: asyncio.Queue = asyncio.Queue(maxsize=CLIENT_QUEUE_EVENTS)
        self.clients.add(queue)
        self.metrics.clients.set(len(self.clients))
        keepalive_s = self.cfg.dashboard.keepalive_s
        try:
            await response.write(sse_event("snapshot", {"rows": self.view.rows(limit=SNAPSHOT_ROWS),
                                                        "summary": self.summary(),
                                                        "channels": self.view.channels}))
            while True:
                try:
                    chunk = await asyncio.wait_for(queue.get(), timeout=keepalive_s)
                except TimeoutError:
                    chunk = b": keepalive\n\n"
                if chunk is None:  # the push loop gave up on this client (too slow)
                    break
                await response.write(chunk)
        except (ConnectionResetError, ConnectionError):
            pass  # the browser went away
        finally:
            self.clients.discard(queue)
            self.metrics.clients.set(len(self.clients))
        return response

    # ------------------------------------------------------------------ push
    async def _push_loop(self) -> None:
        interval_s = self.cfg.dashboard.push_interval_s
        last_sweep = time.monotonic()
        while True:
            await asyncio.sleep(interval_s)
            self.push_once()
            if time.monotonic() - last_sweep > STALE_SWEEP_S:
                self.view.forget_stale(time.time())
                last_sweep = time.monotonic()

    def push_once(self) -> None:
        """New rows since the last push, and the rates, to every client; a client whose queue is full is
        dropped (told by a None in its queue once it drains), never allowed to grow memory."""
        if not self.clients:
            self._pushed_seq = self.view.seq
            return
        rows = self.view.rows(since_seq=self._pushed_seq, limit=SNAPSHOT_ROWS)
        self._pushed_seq = self.view.seq
        chunk = sse_event("update", {"rows": rows, "summary": self.summary()})
        for queue in list(self.clients):
            try:
                queue.put_nowait(chunk)
            except asyncio.QueueFull:
                self.clients.discard(queue)
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                queue.put_nowait(None)
        self.metrics.clients.set(len(self.clients))


def dashboard_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


async def run_dashboard(cfg: StreamConfig, *, on_started=None) -> None:
    """Serve until SIGINT/SIGTERM. `on_started(url)` is called once the port is bound."""
    dashboard = Dashboard(cfg)
    runner = web.AppRunner(dashboard.app(), handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, cfg.dashboard.host, cfg.dashboard.port, shutdown_timeout=2.0)
    await site.start()
    port = runner.addresses[0][1] if runner.addresses else cfg.dashboard.port
    url = dashboard_url(cfg.dashboard.host, port)
    log.info("dashboard on %s (%s)", url, "token required" if cfg.dashboard.token else "no token")
    if on_started is not None:
        on_started(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("dashboard stopping")
        await runner.cleanup()
