"""Waiting out Redis and Kafka outages: one retry policy, one readiness flag per dependency.

Every call on the live path that can fail because Redis or the broker is unreachable goes through
`Dependency.call`: it retries with exponential backoff and jitter (tenacity) until the call succeeds
or the caller is cancelled (SIGTERM), so a batch stays uncommitted and unacknowledged while it waits
and nothing is skipped. While any call fails the dependency is *unready*: `/health` answers 503,
`casting_dependency_up` is 0 and `casting_dependency_outage_seconds_total` grows. One WARNING line
starts an outage and one INFO line ends it, with the number of failed attempts, instead of a line
per attempt.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiokafka.errors import KafkaError
from redis.exceptions import RedisClusterException, RedisError
from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception, wait_random_exponential

from stream_app.config import ResilienceConfig
from stream_app.runtime.connection_errors import is_misconfiguration

log = logging.getLogger(__name__)

T = TypeVar("T")

#: what an unreachable or restarting Redis or broker raises (kafka-python's errors for the admin calls; a
#: Redis Cluster client's "cannot be connected" / "slots are not covered", which are no RedisError)
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (RedisError, RedisClusterException, KafkaError, OSError,
                                                  TimeoutError)


def is_outage(exc: BaseException) -> bool:
    if is_misconfiguration(exc):  # refused credentials or TLS settings: a retry cannot fix them
        return False
    if isinstance(exc, OUTAGE_ERRORS):
        return True
    try:  # kafka-python (admin client) has its own error tree
        from kafka.errors import KafkaError as SyncKafkaError
    except ImportError:  # pragma: no cover - kafka-python is a dependency
        return False
    return isinstance(exc, SyncKafkaError)


class Dependency:
    """One external service (``redis`` or ``kafka``): its readiness, outage accounting and retry policy.

    `up_gauge` and `outage_seconds` are the labelled Prometheus children for this dependency (or None).
    `clock` is monotonic seconds, passed in so tests can drive it.
    """

    def __init__(
        self,
        name: str,
        *,
        initial_wait_s: float = 0.1,
        max_wait_s: float = 5.0,
        stall_after_s: float | None = None,
        up_gauge=None,
        outage_seconds=None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.initial_wait_s = initial_wait_s
        self.max_wait_s = max_wait_s
        self.stall_after_s = stall_after_s
        self.up_gauge = up_gauge
        self.outage_seconds = outage_seconds
        self.clock = clock
        self.down_since: float | None = None
        self.failed_attempts = 0
        self.outages = 0
        self.longest_outage_s = 0.0
        self._accounted_until = 0.0
        self._retrying = 0  # calls now waiting out a failure or a stall: only their success ends the outage
        if up_gauge is not None:
            up_gauge.set(1)

    @classmethod
    def from_config(cls, name: str, cfg: ResilienceConfig, up_gauge=None, outage_seconds=None) -> Dependency:
        return cls(name, initial_wait_s=cfg.retry_initial_s, max_wait_s=cfg.retry_max_s,
                   stall_after_s=cfg.stall_after_s, up_gauge=up_gauge, outage_seconds=outage_seconds)

    @property
    def ready(self) -> bool:
        return self.down_since is None

    def failed(self, exc: BaseException, what: str = "") -> None:
        now = self.clock()
        self.failed_attempts += 1
        if self.down_since is None:
            self.down_since = self._accounted_until = now
            self.outages += 1
            if self.up_gauge is not None:
                self.up_gauge.set(0)
            log.warning("%s unreachable%s (%s: %s); waiting for it, retrying with backoff",
                        self.name, f" during {what}" if what else "", type(exc).__name__, str(exc)[:200])
        self._account(now)

    def succeeded(self) -> None:
        if self.down_since is None:
            return
        now = self.clock()
        self._account(now)
        lasted = now - self.down_since
        self.longest_outage_s = max(self.longest_outage_s, lasted)
        log.info("%s is back after %.1f s (%d failed attempt(s))", self.name, lasted, self.failed_attempts)
        self.down_since = None
        self.failed_attempts = 0
        if self.up_gauge is not None:
            self.up_gauge.set(1)

    def probe_succeeded(self) -> None:
        """A health probe got an answer. It ends the outage only while no call is retrying: a broker that
        answers metadata requests may still refuse writes (too few in-sync replicas, lost quorum), and
        readiness must not flip back while the sends that matter still fail."""
        if self._retrying == 0:
            self.succeeded()

    def _account(self, now: float) -> None:
        if self.outage_seconds is not None and now > self._accounted_until:
            self.outage_seconds.inc(now - self._accounted_until)
        self._accounted_until = max(self._accounted_until, now)

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        what: str,
        *,
        give_up: Callable[[], bool] = lambda: False,
        on_failure: Callable[[], None] | None = None,
    ) -> T:
        """`await fn()` until it succeeds. Outage errors are retried (backoff with jitter, no limit);
        anything else propagates. `give_up()` is asked before each wait: True raises the last error
        (e.g. the partitions of the batch in hand were revoked, so it is no longer ours to finish).
        `on_failure()` is called after each failed attempt (a metric of the caller's)."""
        try:
            result = await self._watched(fn, what)  # the common case costs one await, not a retry loop
        except BaseException as exc:
            self._first_failure(exc, what, give_up, on_failure)

            async def attempt() -> T:  # an `async def`, so tenacity awaits it (a lambda's coroutine it would return)
                return await self._watched(fn, what)

            self._retrying += 1
            try:
                result = await AsyncRetrying(sleep=asyncio.sleep, **self._policy(what, give_up, on_failure))(attempt)
            finally:
                self._retrying -= 1
        self.succeeded()
        return result

    async def _watched(self, fn: Callable[[], Awaitable[T]], what: str) -> T:
        """`await fn()`; if it has not answered after `stall_after_s`, the dependency is unready from then
        until a call succeeds (the call itself goes on waiting). An aiokafka producer whose partition leader
        is known but unreachable (two of three brokers down, no quorum to elect another) neither sends nor
        fails: without this the worker would look ready while nothing leaves it."""
        if self.stall_after_s is None:
            return await fn()
        stalled = False

        def stall() -> None:
            nonlocal stalled
            stalled = True
            self._retrying += 1
            self.failed(TimeoutError(f"no answer within {self.stall_after_s:g} s"), what)

        timer = asyncio.get_running_loop().call_later(self.stall_after_s, stall)
        try:
            return await fn()
        finally:
            timer.cancel()
            if stalled:
                self._retrying -= 1

    def call_sync(self, fn: Callable[[], T], what: str) -> T:
        """`fn()` until it succeeds, with the same policy as `call`, for blocking start-up work."""
        try:
            result = fn()
        except BaseException as exc:
            self._first_failure(exc, what, lambda: False, None)
            result = Retrying(**self._policy(what, lambda: False, None))(fn)
        self.succeeded()
        return result

    def _first_failure(self, exc: BaseException, what: str, give_up: Callable[[], bool],
                       on_failure: Callable[[], None] | None) -> None:
        if not is_outage(exc):
            raise exc
        self.failed(exc, what)
        if on_failure is not None:
            on_failure()
        if give_up():
            raise OutageAbandoned(f"{what}: given up during a {self.name} outage")

    def _policy(self, what: str, give_up: Callable[[], bool], on_failure: Callable[[], None] | None) -> dict:
        """tenacity's arguments: retry outage errors only, full-jitter backoff, account each failure."""

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            if exc is not None:
                self.failed(exc, what)
                if on_failure is not None:
                    on_failure()
            if give_up() and exc is not None:
                raise exc

        return {
            "retry": retry_if_exception(is_outage),
            # "full jitter": a random wait up to initial * 2^attempt (at most max): workers do not retry in step
            "wait": wait_random_exponential(multiplier=self.initial_wait_s, max=self.max_wait_s),
            "before_sleep": before_sleep,
            "reraise": True,
        }


class RetryingWindowStore:
    """A window store whose every call waits out Redis outages (`Dependency.call`); the stages take it
    as a plain `WindowStore` and know nothing of retries."""

    def __init__(self, store: Any, redis: Dependency) -> None:
        self._store = store
        self._redis = redis

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        @functools.wraps(attr)
        async def patient(*args: Any, **kwargs: Any) -> Any:
            return await self._redis.call(lambda: attr(*args, **kwargs), f"window store {name}")

        return patient


class OutageAbandoned(Exception):  # noqa: N818 - a decision, not a fault
    """The caller stopped waiting (its work moved elsewhere); the work stays uncommitted."""


class RepeatFilter(logging.Filter):
    """Lets the first of a run of identical log lines through, then one per `every_s` with a count.

    Client libraries (aiokafka, kafka-python) log each failed connection attempt at ERROR, about 140
    lines a second during a broker outage; the operator needs to know it is down, once.
    """

    def __init__(
        self, prefixes: tuple[str, ...], every_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.every_s = every_s
        self.clock = clock
        self._seen: dict[tuple[str, object], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(self.prefixes):
            return True
        key = (record.name, record.msg)
        now = self.clock()
        last, suppressed = self._seen.get(key, (-1e18, 0))
        if now - last < self.every_s:
            self._seen[key] = (last, suppressed + 1)
            return False
        if suppressed:
            record.msg = f"{record.msg} (and {suppressed} similar line(s) in the last {now - last:.0f} s)"
        self._seen[key] = (now, 0)
        if len(self._seen) > 1000:  # message templates are few; this only guards against unbounded growth
            self._seen.clear()
        return True


CLIENT_LOGGERS = ("aiokafka", "kafka", "faust.transport", "mode")


def quiet_client_loggers(every_s: float = 30.0) -> None:
    """Install `RepeatFilter` for the Kafka client libraries on the root logger's handlers (a logger's own
    filters do not see its children's records; a handler's do)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RepeatFilter) for f in handler.filters):
            handler.addFilter(RepeatFilter(CLIENT_LOGGERS, every_s))
