"""The Prometheus client: one HTTP session, a small thread pool, and the snapshot of a decision.

:class:`PrometheusSource` renders the target's queries (:mod:`decision_service.queries`), sends
them, parses the answers (:mod:`decision_service.prometheus_answers`) and returns the
:class:`~decision_service.snapshot.MetricsSnapshot` a decision is made from, with the shield's
windows (:meth:`PrometheusSource.readings_blocking`: both from one range query). The canary's
life needs its start time: the ``canary_start`` template answers it, queried once per canary and
then cached (the start of a canary never changes, so the cache only saves a round trip; any
replica can recompute it). Steady state: one PromQL query per decision, of the windows since
those of the canary's kept life (:meth:`PrometheusSource.measure_blocking`,
:mod:`decision_service.canary_life`).

**One deadline per decision, and it frees the worker.** Everything a decision asks Prometheus
(one query, two for a canary seen for the first time, and any wait for a free worker) must be
over ``timeout_seconds`` after the request came in; past it the answer is a 503. An HTTP
client's timeout is per socket read, not per answer: a Prometheus that sends its answer one byte
every 0.25 s never trips it, so a worker thread used to stay on such an answer for minutes
after the caller had given up, and with all 8 workers stuck every decision was a 503 and
``/readyz`` stayed failing for minutes after Prometheus had recovered. So each job in the pool
carries a :class:`_Deadline`: its queries get the time left as their connect and read timeouts,
the connection it reads from is registered with it, and when the deadline passes the event
loop's side cancels it, which shuts the socket down. A read blocked on it returns at once, the
job fails and the worker is free. Shutting the socket down works the same for HTTP and HTTPS
(it acts on the file descriptor), and keeps the tuned synchronous client; an asyncio client with
an overall timeout would move the HTTP work onto the event loop that also serves the API.
A job still queued when its deadline passes never starts. So the answer comes within the
deadline (plus a few milliseconds) however slow Prometheus is and however busy the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, TypeVar
from urllib.parse import quote_plus, unquote, urlsplit

import orjson
import requests
import urllib3
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.response import HTTPResponse
from urllib3.util.retry import Retry

from decision_service.canary_life import SETTLE_SECONDS, Life, Lives, grid_point
from decision_service.prometheus_answers import (
    PrometheusUnavailable,
    WindowMatrix,
    parse_matrix,
    parse_start,
)
from decision_service.prometheus_http import PlainHttp
from decision_service.queries import (
    QueryTemplates,
    RenderedQueries,
    Target,
    TemplateError,
    render,
)
from decision_service.shield import ShieldConfig, Windows, new_evidence
from decision_service.snapshot import MetricsSnapshot, MissingMetricError
from decision_service.tolerance import Tolerance

_MAX_CACHED_STARTS: Final = 4096
#: Windows of stable before the canary started that the shield reads (its baseline).
BASELINE_WINDOWS: Final = 10
#: The most windows of the canary's life the shield reads (3 h at 30 s; a paused rollout's
#: canary can live for days, and the most recent windows are the ones that matter).
MAX_WINDOWS: Final = 360


#: How long past a job's deadline the event loop waits before cutting its socket: the job's own
#: read timeout (the time left) usually ends it first, with the precise error.
_CUT_AFTER_SECONDS: Final = 0.05
_T = TypeVar("_T")


class _Deadline:
    """When one job in the pool must be done, and the socket it is reading (to cut it then).

    The job's thread registers the socket of each answer it waits for (:meth:`watch`); the
    event loop calls :meth:`cancel` when the deadline has passed, which shuts that socket down
    so a blocked read returns at once. A lock orders the two: a socket registered after the
    cancel is refused (the job stops), one registered before is shut down.
    """

    __slots__ = ("_lock", "_sock", "at", "cancelled")

    def __init__(self, at: float) -> None:
        self.at = at
        self.cancelled = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def watch(self, sock: socket.socket | None) -> None:
        """Register the socket the job now reads from (raises once cancelled)."""
        with self._lock:
            if self.cancelled:
                raise PrometheusUnavailable("timeout", "the decision's deadline has passed")
            self._sock = sock

    def release(self) -> None:
        with self._lock:
            self._sock = None

    def cancel(self) -> None:
        """The deadline has passed: stop the job's reads (from any thread)."""
        with self._lock:
            self.cancelled = True
            sock, self._sock = self._sock, None
        if sock is not None:
            # socket.socket's own shutdown, also for an SSLSocket: it acts on the descriptor and
            # leaves the TLS object to the thread that is using it.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)


_job = threading.local()


def _current_deadline() -> _Deadline | None:
    deadline: _Deadline | None = getattr(_job, "deadline", None)
    return deadline


def _watch_socket(sock: socket.socket | None) -> None:
    """Register ``sock`` with the job's deadline, if the caller is a job of the pool."""
    deadline = _current_deadline()
    if deadline is not None:
        deadline.watch(sock)


def _watch_response_socket(connection: HTTPConnection) -> None:
    _watch_socket(connection.sock)


@functools.lru_cache(maxsize=1024)
def _form_value(value: str) -> str:
    """``value`` form-encoded as ``urlencode`` does (a target's query is the same at every
    decision, so it is encoded once)."""
    return quote_plus(value)


class _DeadlineHTTPConnection(HTTPConnection):
    """Registers its socket with the job's deadline before it waits for an answer."""

    def getresponse(self) -> HTTPResponse:  # type: ignore[override]  # as urllib3 does
        _watch_response_socket(self)
        return super().getresponse()


class _DeadlineHTTPSConnection(HTTPSConnection):
    """Registers its socket with the job's deadline before it waits for an answer."""

    def getresponse(self) -> HTTPResponse:  # type: ignore[override]  # as urllib3 does
        _watch_response_socket(self)
        return super().getresponse()


class _DeadlineHTTPPool(HTTPConnectionPool):
    ConnectionCls = _DeadlineHTTPConnection


class _DeadlineHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


class _DeadlineAdapter(HTTPAdapter):
    """An adapter whose connections register their sockets with the job's deadline."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _DeadlineHTTPPool,
            "https": _DeadlineHTTPSPool,
        }


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
    adapter = _DeadlineAdapter(
        pool_connections=1, pool_maxsize=connections, max_retries=Retry(total=0), pool_block=False
    )
    session.mount(url, adapter)
    return client


class PrometheusSource:
    """Builds a :class:`MetricsSnapshot` for a target from Prometheus.

    The client is synchronous, so its calls run in a dedicated thread pool, never on the event
    loop: :meth:`run` hands a whole blocking job (the queries of one decision, and whatever the
    caller computes from them) to one worker thread, with one deadline ``timeout_seconds``
    after the call (see the module docstring: it ends the job's reads, not only the wait). Each
    query's HTTP timeouts are the time left, and Prometheus gets ``timeout=`` too. A small pool
    (see ``app.QUERY_THREADS``) keeps the threads from fighting over the GIL.
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
        on_read: Callable[[str, int], None] | None = None,
    ) -> None:
        self._client = client
        session = client._session  # the client's one session (prometheus_client)
        adapter = session.get_adapter(client.url)
        if not isinstance(adapter, HTTPAdapter):
            raise TypeError(f"{type(adapter).__name__}: not the session prometheus_client made")
        self._adapter, self._session = adapter, session
        self._pool = adapter.poolmanager.connection_from_url(client.url)
        parts = urlsplit(client.url)
        self._range_path = parts.path.rstrip("/") + "/api/v1/query_range"
        self._headers = {
            **session.headers,
            **(client.headers or {}),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        if parts.username is not None:
            # credentials in the URL: requests sends them on the instant queries, so the range
            # query sends them too (until round 18 it did not, and every decision was a 401)
            user, password = unquote(parts.username), unquote(parts.password or "")
            self._headers["Authorization"] = urllib3.util.make_headers(
                basic_auth=f"{user}:{password}"
            )["authorization"]
        # an http:// Prometheus: the range query on this module's own keep-alive connections
        self._plain = (
            PlainHttp(client.url, self._headers, threads)
            if parts.scheme.lower() == "http"
            else None
        )
        self.templates = templates
        self._window = window
        self._window_seconds = window_seconds
        self._timeout = timeout_seconds
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="promql")
        self._starts: OrderedDict[tuple[str, ...], float] = OrderedDict()
        self._starts_lock = threading.Lock()
        self._lives = Lives()
        self._on_query = on_query
        self._on_read = on_read  # ("kept" or "full", lives kept) after each measure_blocking

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._plain is not None:
            self._plain.close()
        self._client.close()

    # -- running blocking work

    async def run(self, job: Callable[[], _T]) -> _T:
        """Run ``job`` in the pool; PrometheusUnavailable unless it is done ``timeout_seconds``
        from now (waiting for a free worker included). Past the deadline the job's reads are
        cut and a job that has not started never does."""
        loop = asyncio.get_running_loop()
        deadline = _Deadline(time.monotonic() + self._timeout)

        def work() -> _T:
            if deadline.cancelled or deadline.remaining() <= 0:
                raise PrometheusUnavailable("timeout", "no worker was free before the deadline")
            _job.deadline = deadline
            try:
                return job()
            finally:
                _job.deadline = None
                deadline.release()

        future = loop.run_in_executor(self._executor, work)
        try:
            return await asyncio.wait_for(future, timeout=deadline.remaining() + _CUT_AFTER_SECONDS)
        except TimeoutError as exc:
            deadline.cancel()
            raise PrometheusUnavailable("timeout", f"no answer within {self._timeout:g}s") from exc

    # -- querying (blocking: call from the pool)

    def query_blocking(self, promql: str, at: float | None = None) -> Any:
        """One instant query's ``data.result`` (raises PrometheusUnavailable).

        In a job of :meth:`run` the query has the job's time left; called on its own, the
        whole ``timeout_seconds`` (its reads bounded by the HTTP timeouts only).
        """
        at = time.time() if at is None else at
        params = {"time": f"{at:.3f}", "timeout": f"{self._timeout:g}s"}
        with self._asking() as left:
            # requests takes (connect, read) seconds; the client's annotation says int.
            return self._client.custom_query(promql, params=params, timeout=(left, left))  # type: ignore[arg-type]

    def query_range_blocking(self, promql: str, start: float, end: float, step: float) -> Any:
        """One range query's ``data.result`` (a matrix; raises PrometheusUnavailable).

        The query of every decision, so it skips the client library and requests' request
        preparation: a form-encoded POST on pooled keep-alive connections that register their
        sockets with the job's deadline (:mod:`decision_service.prometheus_http` for an
        ``http://`` Prometheus, the session's urllib3 pool for ``https://``), the answer
        parsed with orjson. Those layers cost a quarter of a decision's measuring through
        requests (``docs/queries.md``, "What it costs").
        """
        body = (
            f"query={_form_value(promql)}&start={start:.3f}&end={end:.3f}"
            f"&step={step:g}s&timeout={self._timeout:g}s"
        )
        with self._asking() as left:
            if self._plain is not None:
                status, data = self._plain.post(
                    self._range_path, body.encode(), left, _watch_socket
                )
            else:
                # the session's verify and client certificate, as requests applies them
                self._adapter.cert_verify(
                    self._pool, self._client.url, self._session.verify, self._session.cert
                )
                response = self._pool.urlopen(
                    "POST",
                    self._range_path,
                    body=body,
                    headers=self._headers,
                    timeout=urllib3.Timeout(connect=left, read=left),
                    retries=False,
                    redirect=False,
                    assert_same_host=False,
                    preload_content=True,
                )
                status, data = response.status, response.data
            if status != 200:
                text = data[:200].decode("utf-8", "replace")
                raise PrometheusUnavailable("http_error", f"HTTP {status}: {text}")
            answer = orjson.loads(data)
            if not isinstance(answer, dict) or answer.get("status") != "success":
                error = answer.get("error", answer) if isinstance(answer, dict) else answer
                raise PrometheusUnavailable("http_error", str(error)[:200])
            return answer["data"]["result"]

    @contextlib.contextmanager
    def _asking(self) -> Iterator[float]:
        """One query to Prometheus: yields the seconds it may take (the job's deadline, or the
        whole timeout on its own), maps what goes wrong to PrometheusUnavailable, and frees
        the deadline and times the query when it ends."""
        deadline = _current_deadline() or _Deadline(time.monotonic() + self._timeout)
        left = deadline.remaining()
        if deadline.cancelled or left <= 0:
            raise PrometheusUnavailable("timeout", "the decision's deadline has passed")
        started = time.perf_counter()
        try:
            yield left
        except requests.RequestException as exc:
            if deadline.cancelled or deadline.remaining() <= 0 or isinstance(exc, requests.Timeout):
                raise PrometheusUnavailable(
                    "timeout", f"no answer within {self._timeout:g}s"
                ) from exc
            if isinstance(exc, requests.exceptions.InvalidJSONError):
                raise PrometheusUnavailable("malformed", f"not JSON: {_short(exc)}") from exc
            raise PrometheusUnavailable("unreachable", _short(exc)) from exc
        except urllib3.exceptions.HTTPError as exc:  # the range query, on the pool directly
            if (
                deadline.cancelled
                or deadline.remaining() <= 0
                or (
                    isinstance(exc, urllib3.exceptions.TimeoutError)
                    and not isinstance(exc, urllib3.exceptions.NewConnectionError)
                )
            ):
                raise PrometheusUnavailable(
                    "timeout", f"no answer within {self._timeout:g}s"
                ) from exc
            raise PrometheusUnavailable("unreachable", _short(exc)) from exc
        except OSError as exc:  # the range query on plain HTTP (prometheus_http)
            if deadline.cancelled or deadline.remaining() <= 0 or isinstance(exc, TimeoutError):
                raise PrometheusUnavailable(
                    "timeout", f"no answer within {self._timeout:g}s"
                ) from exc
            raise PrometheusUnavailable("unreachable", _short(exc)) from exc
        except PrometheusApiClientException as exc:
            raise PrometheusUnavailable("http_error", _short(exc)) from exc
        except (KeyError, TypeError, ValueError) as exc:  # not JSON, or no data.result
            raise PrometheusUnavailable("malformed", f"unexpected answer: {_short(exc)}") from exc
        finally:
            deadline.release()
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

    def readings_blocking(
        self, target: Target, step_weight: float, at: float | None = None
    ) -> tuple[MetricsSnapshot, Windows]:
        """The metrics of one decision and the shield's windows, from one range query (raises
        PrometheusUnavailable or MissingMetricError); two queries for a canary this process has
        not seen yet (its start time first).

        The query asks for the ``requests`` and ``latency_buckets`` templates over the analysis
        window, stepped by the window and ending at ``at`` (default now; a replay,
        :mod:`decision_service.replay`, passes the moment it replays): every point is one
        window's counts, as the simulator gives the shield one interval at a time. The canary's
        windows are those ending more than half a window after its start, at most
        :data:`MAX_WINDOWS` (the most recent); stable's :data:`BASELINE_WINDOWS` before them
        are the shield's baseline. The snapshot's last window is the point at ``at``, and its
        life is the sum of the canary's windows (the last window while the canary is younger
        than half a window), for both versions: the simulator's life totals are the same sums.
        """
        queries, now, start = self._canary(target, at)
        step = self._window_seconds
        first = _first_window(start, now, step)
        result = self.query_range_blocking(
            queries.spans({"window": self._window}), first, now, step
        )
        matrix = parse_matrix(result, self.templates, queries.canary, queries.stable)
        return readings_from(matrix, start, now, step, step_weight)

    def _canary(self, target: Target, at: float | None) -> tuple[RenderedQueries, float, float]:
        """The target's queries, the moment read (``at``, default now) and the canary's start."""
        try:
            queries = render(self.templates, target)
        except TemplateError as exc:
            raise PrometheusUnavailable("bad_template", str(exc)) from exc
        now = time.time() if at is None else at
        return queries, now, self.canary_start_blocking(target, queries, now)

    def measure_blocking(
        self,
        target: Target,
        step_weight: float,
        tolerance: Tolerance,
        shield: ShieldConfig,
        at: float | None = None,
    ) -> tuple[MetricsSnapshot, int]:
        """The snapshot of one decision with the shield's evidence over the canary's life, and
        the windows the canary spent at its current share, from the canary's kept
        :class:`~decision_service.canary_life.Life` and one range query of the windows after it
        (raises PrometheusUnavailable or MissingMetricError).

        What :meth:`readings_blocking` reads, on the kept life's grid of windows: the decision
        reads the windows ending at its grid point (at most a sixth of a window before ``at``:
        :func:`~decision_service.canary_life.grid_point`), and the kept life is rebuilt on
        ``at`` with :meth:`readings_blocking`'s query when there is none or the grid is too far
        from ``at``.
        """
        queries, now, start = self._canary(target, at)
        step = self._window_seconds
        promql = queries.spans({"window": self._window})
        key = (promql, start, tolerance, shield)
        life = self._lives.get(key)  # shared with concurrent decisions: never changed in place
        point = None if life is None else grid_point(life.kept_end, step, now)
        shared = life is not None and point is not None
        if life is None or point is None:
            point = now
            first = _first_window(start, now, step)
            life = Life.empty(start, step, first - step, new_evidence(tolerance, shield))
        first = float(f"{life.kept_end + step:.3f}")  # Prometheus's first window end
        result = self.query_range_blocking(promql, first, point, step)
        matrix = parse_matrix(result, self.templates, queries.canary, queries.stable)
        windows = matrix.windows()
        # The windows that ended SETTLE_SECONDS before the point are kept (in a new life, put
        # in place of the old); the newer ones are added to a copy for this decision only and
        # read again at the next one.
        kept_windows = math.floor((point - first - SETTLE_SECONDS + 0.002) / step) + 1
        ends = sorted(matrix.times)
        kept: list[float] = []
        if kept_windows > 0 or not shared:
            if shared:
                life = life.copy()
            if kept_windows > 0:
                life.kept_end = round(first + (kept_windows - 1) * step, 3)
                kept = [t for t in ends if t <= life.kept_end + 0.0005]
                life.add(matrix, windows, kept)
            self._lives.put(key, life)
        fresh = ends[len(kept) :]
        current = life.copy() if fresh else life
        current.add(matrix, windows, fresh)
        if self._on_read is not None:
            self._on_read("kept" if shared else "full", len(self._lives))
        return (
            current.snapshot(matrix, float(f"{point:.3f}"), step_weight),
            current.windows_at_share(),
        )

    def snapshot_blocking(
        self, target: Target, step_weight: float, at: float | None = None
    ) -> MetricsSnapshot:
        """The snapshot of :meth:`readings_blocking` (without the shield's evidence)."""
        return self.readings_blocking(target, step_weight, at)[0]

    # -- async conveniences

    async def snapshot(
        self, target: Target, step_weight: float, at: float | None = None
    ) -> MetricsSnapshot:
        return await self.run(lambda: self.snapshot_blocking(target, step_weight, at))

    async def query(self, promql: str) -> Any:
        return await self.run(lambda: self.query_blocking(promql))

    async def ready(self) -> None:
        """Raise PrometheusUnavailable unless Prometheus answers a trivial query."""
        await self.query("vector(1)")


def _first_window(start: float, at: float, step: float) -> float:
    """The end of the first window a full read at ``at`` asks for: stable's
    :data:`BASELINE_WINDOWS` before the canary's life, of at most :data:`MAX_WINDOWS`."""
    # The canary's windows are those ending more than half a window after its start, as
    # readings_from classifies them; counted the same way, stable gets exactly BASELINE_WINDOWS
    # before them (a plain ceil counted the window the canary started in as the canary's, and
    # then classified it as stable's: BASELINE_WINDOWS + 1 of them).
    life = min(max(0, math.ceil((at - start) / step - 0.5)), MAX_WINDOWS)
    return at - (life + BASELINE_WINDOWS - 1) * step


def readings_from(
    matrix: WindowMatrix, start: float, at: float, step: float, step_weight: float
) -> tuple[MetricsSnapshot, Windows]:
    """The snapshot and the shield's windows in a range answer ending at ``at`` (see
    :meth:`PrometheusSource.readings_blocking`): windows ending more than half a window after
    the canary's ``start`` are its life, the earlier ones stable's baseline."""
    baseline, life_windows = [], []
    for t, (canary, stable) in matrix.windows().items():
        # a window that ends before the canary started (or as it started) is stable's own
        if t <= start + 0.5 * step:
            if stable.requests > 0:
                baseline.append(stable)
        else:
            life_windows.append((canary, stable))
    end = matrix.end_near(float(f"{at:.3f}"))
    last = () if end is None else (end,)
    lived = sorted(t for t in matrix.times if t > start + 0.5 * step) or last
    snapshot = MetricsSnapshot(
        step_weight=step_weight,
        canary=matrix.metrics(last, "canary"),
        stable=matrix.metrics(last, "stable"),
        canary_cumulative=matrix.metrics(lived, "canary"),
        stable_cumulative=matrix.metrics(lived, "stable"),
    )
    return snapshot, Windows(tuple(baseline), tuple(life_windows))


def _short(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[: limit - 1] + "…"
