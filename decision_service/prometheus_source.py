"""The Prometheus client: one HTTP session, a small thread pool, and the snapshot of a decision.

:class:`PrometheusSource` renders the target's queries (:mod:`decision_service.queries`), sends
them, parses the answers (:mod:`decision_service.prometheus_answers`) and returns the
:class:`~decision_service.snapshot.MetricsSnapshot` a decision is made from. The canary's life
needs its start time: the ``canary_start`` template answers it, queried once per canary and then
cached (the start of a canary never changes, so the cache only saves a round trip; any replica
can recompute it). Steady state: one PromQL query per decision.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, TypeVar

import requests
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from decision_service.prometheus_answers import PrometheusUnavailable, parse_spans, parse_start
from decision_service.queries import (
    QueryTemplates,
    RenderedQueries,
    Target,
    TemplateError,
    render,
)
from decision_service.snapshot import MetricsSnapshot, MissingMetricError

_MAX_CACHED_STARTS: Final = 4096
_T = TypeVar("_T")


class _FormPostSession(requests.Session):
    """Sends a POST's query parameters as a form body, not in the URL.

    ``PrometheusConnect`` passes the query as URL parameters even with ``method="POST"``;
    Prometheus accepts the same parameters form-encoded in the body, which spares requests and
    urllib3 their per-character URL handling of a long query (and any URL length limit).
    """

    def request(  # type: ignore[override]
        self, method: str, url: str, params: Any = None, data: Any = None, **kwargs: Any
    ) -> requests.Response:
        if method == "POST" and params and data is None:
            params, data = None, params
        return super().request(method, url, params=params, data=data, **kwargs)


def prometheus_client(url: str, timeout_seconds: float, connections: int) -> PrometheusConnect:
    """One client and one HTTP session for the process: pooled keep-alive, no retries.

    Retries stay off so a slow or failing Prometheus costs at most one timeout (Argo retries
    the measurement); proxies and netrc from the environment are not consulted per request;
    answers come uncompressed (Prometheus is near, and gzip costs CPU on both sides).
    """
    session = _FormPostSession()
    session.trust_env = False
    session.headers["Accept-Encoding"] = "identity"
    client = PrometheusConnect(
        url=url,
        session=session,
        retry=Retry(total=0),
        timeout=math.ceil(timeout_seconds),
        method="POST",
    )
    adapter = HTTPAdapter(
        pool_connections=1, pool_maxsize=connections, max_retries=Retry(total=0), pool_block=False
    )
    session.mount(url, adapter)
    return client


class PrometheusSource:
    """Builds a :class:`MetricsSnapshot` for a target from Prometheus.

    The client is synchronous, so its calls run in a dedicated thread pool, never on the event
    loop: :meth:`run` hands a whole blocking job (the queries of one decision, and whatever the
    caller computes from them) to one worker thread, bounded by a deadline. Each query also
    has a timeout in the HTTP client and at Prometheus (``timeout=``). A small pool (see
    ``app.QUERY_THREADS``) keeps the threads from fighting over the GIL.
    """

    def __init__(
        self,
        client: PrometheusConnect,
        templates: QueryTemplates,
        *,
        window: str,
        window_seconds: float,
        timeout_seconds: float,
        threads: int = 8,
        on_query: Callable[[float], None] | None = None,
    ) -> None:
        self._client = client
        self.templates = templates
        self._window = window
        self._window_seconds = window_seconds
        self._timeout = timeout_seconds
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="promql")
        self._starts: OrderedDict[tuple[str, ...], float] = OrderedDict()
        self._starts_lock = threading.Lock()
        self._on_query = on_query

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    # -- running blocking work

    async def run(self, job: Callable[[], _T], queries: int = 2) -> _T:
        """Run ``job`` in the pool; PrometheusUnavailable past ``queries`` timeouts (+0.5 s).

        The deadline is a backstop: each query already times out on its own.
        """
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, job)
        deadline = self._timeout * queries + 0.5
        try:
            return await asyncio.wait_for(future, timeout=deadline)
        except TimeoutError as exc:
            raise PrometheusUnavailable("timeout", f"no answer within {deadline:g}s") from exc

    # -- querying (blocking: call from the pool)

    def query_blocking(self, promql: str, at: float | None = None) -> Any:
        """One instant query's ``data.result`` (raises PrometheusUnavailable)."""
        at = time.time() if at is None else at
        params = {"time": f"{at:.3f}", "timeout": f"{self._timeout:g}s"}
        started = time.perf_counter()
        try:
            # requests takes float seconds; the client's annotation says int.
            return self._client.custom_query(promql, params=params, timeout=self._timeout)  # type: ignore[arg-type]
        except requests.Timeout as exc:
            raise PrometheusUnavailable("timeout", f"no answer within {self._timeout:g}s") from exc
        except requests.exceptions.InvalidJSONError as exc:
            raise PrometheusUnavailable("malformed", f"not JSON: {_short(exc)}") from exc
        except requests.RequestException as exc:
            raise PrometheusUnavailable("unreachable", _short(exc)) from exc
        except PrometheusApiClientException as exc:
            raise PrometheusUnavailable("http_error", _short(exc)) from exc
        except (KeyError, TypeError, ValueError) as exc:  # not JSON, or no data.result
            raise PrometheusUnavailable("malformed", f"unexpected answer: {_short(exc)}") from exc
        finally:
            if self._on_query is not None:
                self._on_query(time.perf_counter() - started)

    def canary_start_blocking(self, target: Target, queries: RenderedQueries, at: float) -> float:
        """When the canary's life began (cached per canary: it never changes)."""
        key = (target.namespace, target.rollout, target.service or "", target.canary_hash)
        with self._starts_lock:
            cached = self._starts.get(key)
            if cached is not None:
                self._starts.move_to_end(key)
                return cached
        start = parse_start(self.query_blocking(queries.canary_start, at))
        if start is None:
            raise MissingMetricError("canary_start", "the canary has no series in Prometheus yet")
        with self._starts_lock:
            self._starts[key] = start
            if len(self._starts) > _MAX_CACHED_STARTS:
                self._starts.popitem(last=False)
        return start

    def snapshot_blocking(self, target: Target, step_weight: float) -> MetricsSnapshot:
        """The metrics of one decision (raises PrometheusUnavailable or MissingMetricError).

        One query in the steady state; two for a canary this process has not seen yet (its
        start time first).
        """
        try:
            queries = render(self.templates, target)
        except TemplateError as exc:
            raise PrometheusUnavailable("bad_template", str(exc)) from exc
        now = time.time()
        start = self.canary_start_blocking(target, queries, now)
        life_seconds = max(math.ceil(now - start), math.ceil(self._window_seconds))
        ranges = {"window": self._window, "life": f"{life_seconds}s"}
        result = self.query_blocking(queries.spans(ranges), now)
        spans = parse_spans(result, self.templates, queries.canary, queries.stable, ranges)
        return MetricsSnapshot(
            step_weight=step_weight,
            canary=spans["window"]["canary"],
            stable=spans["window"]["stable"],
            canary_cumulative=spans["life"]["canary"],
            stable_cumulative=spans["life"]["stable"],
        )

    # -- async conveniences

    async def snapshot(self, target: Target, step_weight: float) -> MetricsSnapshot:
        return await self.run(lambda: self.snapshot_blocking(target, step_weight))

    async def query(self, promql: str) -> Any:
        return await self.run(lambda: self.query_blocking(promql), queries=1)

    async def ready(self) -> None:
        """Raise PrometheusUnavailable unless Prometheus answers a trivial query."""
        await self.query("vector(1)")


def _short(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[: limit - 1] + "…"
