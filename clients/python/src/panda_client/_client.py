"""The synchronous client: `Panda`."""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta
from typing import (
    Any,
    Dict,
    Generator,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Tuple,
    Union,
)

from ._errors import NotFound, PandaConnectionError, PandaError, WaitTimeout, error_from_response
from ._models import BatchItem, Execution, Item, LogLine, format_time
from ._transaction import enqueue_sql, run_enqueue

__all__ = ["Panda", "BATCH_LIMIT"]

#: The most items one batch request carries; `enqueue_many` splits longer lists.
BATCH_LIMIT = 1000

#: Lines asked for per page of a log.
_LOG_PAGE = 1000

_USER_AGENT = "panda-client-python/0.1.0"

_ITEM_KEYS = frozenset({"payload", "idempotency_key", "run_at", "priority", "env"})

RunAt = Union[datetime, timedelta, str, None]


def _segment(value: str) -> str:
    """A path segment, escaped (ids and names never need it, but a stray `/` must not route)."""
    return urllib.parse.quote(str(value), safe="")


def _trigger_body(
    payload: Any,
    idempotency_key: Optional[str],
    run_at: RunAt,
    priority: Optional[int],
    env: Optional[Mapping[str, str]],
) -> Dict[str, Any]:
    body: Dict[str, Any] = {}
    if payload is not None:
        body["payload"] = payload
    if idempotency_key is not None:
        body["idempotency_key"] = idempotency_key
    if run_at is not None:
        body["run_at"] = format_time(run_at)
    if priority is not None:
        body["priority"] = priority
    if env:
        body["env"] = dict(env)
    return body


def _as_item(value: Any) -> Item:
    if isinstance(value, Item):
        return value
    if isinstance(value, dict) and "payload" in value and set(value) <= _ITEM_KEYS:
        return Item(**value)
    return Item(payload=value)


def _sse_events(response: Any) -> Iterator[Tuple[str, str]]:
    """The (event, data) pairs of a `text/event-stream` response, as they arrive."""
    event: Optional[str] = None
    data: List[str] = []
    while True:
        raw = response.readline()
        if not raw:
            return
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data or event:
                yield event or "message", "\n".join(data)
            event, data = None, []
            continue
        if line.startswith(":"):
            continue  # a keep-alive comment
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)


class Panda:
    """A client of one Panda server's HTTP API.

    It holds no connection between calls, so one instance may be shared by threads.

    Args:
        url: The server, e.g. `http://127.0.0.1:7070` (a trailing `/api/v1` is fine). Defaults
            to the `PANDA_URL` environment variable.
        token: An API token (`panda token create NAME`, or the server's admin token). Defaults
            to `PANDA_TOKEN`.
        timeout: Seconds each HTTP request may take before `PandaConnectionError`.

    Raises:
        ValueError: when neither the argument nor the environment gives a URL or a token.

    Example:
        >>> panda = Panda()  # PANDA_URL and PANDA_TOKEN from the environment
        >>> execution = panda.enqueue("send-email", {"to": "ada@example.com"})
    """

    def __init__(
        self,
        url: Optional[str] = None,
        token: Optional[str] = None,
        *,
        timeout: float = 30.0,
    ) -> None:
        url = url or os.environ.get("PANDA_URL")
        token = token or os.environ.get("PANDA_TOKEN")
        if not url:
            raise ValueError(
                "no Panda server URL: pass Panda(url='http://127.0.0.1:7070', ...) "
                "or set PANDA_URL"
            )
        if not token:
            raise ValueError(
                "no Panda API token: pass Panda(token=...) or set PANDA_TOKEN "
                "(create one with `panda token create NAME`; the server's admin token is in "
                "DATA_DIR/admin.token)"
            )
        base = url.rstrip("/")
        if base.endswith("/api/v1"):
            base = base[: -len("/api/v1")]
        if not base.startswith(("http://", "https://")):
            raise ValueError(f"the Panda URL {url!r} does not start with http:// or https://")
        self.url = base
        self.timeout = timeout
        self._token = token

    def __repr__(self) -> str:
        return f"Panda(url={self.url!r})"

    # -- HTTP ---------------------------------------------------------------------------

    def _open(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Optional[Mapping[str, Any]] = None,
        *,
        accept: str = "application/json",
        timeout: Optional[float] = None,
    ) -> Any:
        """Sends a request and returns the open response; raises the typed error for an error
        status and `PandaConnectionError` when no answer came."""
        url = f"{self.url}/api/v1{path}"
        if query:
            pairs = {k: v for k, v in query.items() if v is not None}
            if pairs:
                url += "?" + urllib.parse.urlencode(pairs)
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Accept": accept,
            "User-Agent": _USER_AGENT,
        }
        data: Optional[bytes] = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        elif method not in ("GET", "HEAD", "DELETE"):
            data = b""
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            return urllib.request.urlopen(request, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as err:
            try:
                content = err.read()
            except (OSError, http.client.HTTPException):
                content = b""
            finally:
                err.close()
            raise error_from_response(err.code, content, err.headers) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
            raise self._connection_error(method, path, err) from err

    def _connection_error(self, method: str, path: str, err: BaseException) -> PandaConnectionError:
        reason = getattr(err, "reason", err)
        if isinstance(reason, (socket.timeout, TimeoutError)):
            what = f"no answer within {self.timeout:g} s"
        else:
            what = str(reason) or type(reason).__name__
        return PandaConnectionError(
            "connection",
            f"{method} {self.url}/api/v1{path}: {what}",
            "is the server running at this URL? (`panda server`); "
            "an enqueue that broke off may have happened: repeat it with the same idempotency key",
        )

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Optional[Mapping[str, Any]] = None,
    ) -> Any:
        """Sends a request and returns its JSON answer (`None` for an empty one)."""
        response = self._open(method, path, body, query)
        try:
            with response:
                content = response.read()
        except (OSError, http.client.HTTPException) as err:
            raise self._connection_error(method, path, err) from err
        if not content:
            return None
        try:
            return json.loads(content.decode("utf-8"))
        except ValueError:
            raise PandaError(
                "protocol",
                f"{method} {path}: the answer is not JSON: {content[:200]!r}",
                "is PANDA_URL the Panda server, not something in front of it?",
                response.status,
            ) from None

    # -- jobs ---------------------------------------------------------------------------

    def create_job(self, spec: Mapping[str, Any]) -> Dict[str, Any]:
        """Creates a job from its definition (what `POST /api/v1/jobs` takes).

        Args:
            spec: The job, e.g. `{"name": "transcode-video", "runtime": {"kind": "process",
                "argv": ["python3", "transcode.py"]}, "retry": {"max_attempts": 3,
                "backoff_base_ms": 10000, "backoff_cap_ms": 600000}}`.

        Returns:
            The job as the server stored it.

        Raises:
            Conflict: a job with that name exists.
            InvalidRequest: the definition is not valid (the message names the field).
        """
        job: Dict[str, Any] = self._call("POST", "/jobs", dict(spec))
        return job

    def delete_job(self, name: str) -> None:
        """Deletes a job; its executions' history stays readable.

        Args:
            name: The job's name.

        Raises:
            NotFound: there is no such job.
        """
        self._call("DELETE", f"/jobs/{_segment(name)}")

    # -- executions ---------------------------------------------------------------------

    def enqueue(
        self,
        job: str,
        payload: Any = None,
        *,
        idempotency_key: Optional[str] = None,
        run_at: RunAt = None,
        priority: Optional[int] = None,
        env: Optional[Mapping[str, str]] = None,
    ) -> Execution:
        """Enqueues one run of a job and returns at once, without waiting for it to run.

        Args:
            job: The job's name.
            payload: Any JSON-serializable value; the job reads it from `PANDA_PAYLOAD`
                (at most 64 KiB once serialized). `None` sends none.
            idempotency_key: A second enqueue with the same key (1 to 255 bytes) returns the
                first execution instead of making another: repeat an enqueue safely.
            run_at: Not before this instant: a timezone-aware `datetime`, a `timedelta` from
                now, or RFC 3339 text.
            priority: From -1000 to 1000, higher first; overrides the job's.
            env: Environment overrides for this execution only.

        Returns:
            The execution (status `queued`), or the earlier one its idempotency key names.

        Raises:
            NotFound: no job has that name (the hint names the closest one).
            InvalidRequest: the payload, key, priority or time is not valid.
            Unauthorized: the token is missing, unknown, or read-only.
            Unavailable: the server cannot take it now; nothing was enqueued.
            PandaConnectionError: no answer came (repeat with the same idempotency key).
        """
        body = _trigger_body(payload, idempotency_key, run_at, priority, env)
        answer = self._call("POST", f"/jobs/{_segment(job)}/executions", body)
        return Execution.from_json(answer["execution"])

    def enqueue_many(self, job: str, items: Iterable[Any]) -> List[BatchItem]:
        """Enqueues many runs of one job, each item answered in its place.

        Each request carries up to 1000 items in one transaction on the server; longer lists
        are sent in chunks of 1000. An invalid item does not stop the others.

        Args:
            job: The job's name.
            items: Payloads, or `Item`s (or dicts with a `payload` key and any of
                `idempotency_key`, `run_at`, `priority`, `env`) for items with options. A dict
                with other keys is a payload; wrap a payload that looks like an item in `Item`.

        Returns:
            One `BatchItem` per item, in the same order: `created` or `duplicate` with the
            execution, or `invalid` with the error.

        Raises:
            NotFound: no job has that name, or the server has no batch route (older than
                this client).
            ValueError: an item's `run_at` is a naive datetime.
            PandaError: as `enqueue`; chunks sent before the failing one stay enqueued
                (with idempotency keys, sending the whole list again is safe).
        """
        bodies = []
        for value in items:
            item = _as_item(value)
            bodies.append(
                _trigger_body(
                    item.payload, item.idempotency_key, item.run_at, item.priority, item.env
                )
            )
        results: List[BatchItem] = []
        path = f"/jobs/{_segment(job)}/executions/batch"
        for start in range(0, len(bodies), BATCH_LIMIT):
            chunk = bodies[start : start + BATCH_LIMIT]
            try:
                answer = self._call("POST", path, {"items": chunk})
            except NotFound as err:
                if err.message == "no such API route":
                    err.hint = "this Panda server has no batch enqueue; upgrade it, or call enqueue for each item"
                raise
            answers = answer.get("items") if isinstance(answer, dict) else None
            if not isinstance(answers, list) or len(answers) != len(chunk):
                raise PandaError(
                    "protocol",
                    f"the batch answer has {len(answers) if isinstance(answers, list) else 'no'} "
                    f"items for {len(chunk)} sent",
                )
            for offset, one in enumerate(answers):
                results.append(self._batch_item(start + offset, one))
        return results

    @staticmethod
    def _batch_item(index: int, one: Mapping[str, Any]) -> BatchItem:
        result = str(one.get("result", ""))
        execution = one.get("execution")
        error = one.get("error")
        return BatchItem(
            index=index,
            result=result,
            execution=Execution.from_json(execution) if execution else None,
            error=(
                PandaError(
                    str(error.get("code", "invalid")),
                    str(error.get("message", "")),
                    error.get("hint") or None,
                )
                if isinstance(error, dict)
                else None
            ),
        )

    def get(self, id: str) -> Execution:
        """Reads one execution.

        Args:
            id: The execution's id.

        Returns:
            The execution as it is now.

        Raises:
            NotFound: no such execution (or it was pruned).
            InvalidRequest: the id is not an execution id.
        """
        return Execution.from_json(self._call("GET", f"/executions/{_segment(id)}"))

    def cancel(self, id: str) -> Execution:
        """Cancels an execution: a queued one at once, a running one through its worker
        (its status becomes `cancelled` within a heartbeat).

        Args:
            id: The execution's id.

        Returns:
            The execution after the request (a running one may still show `running`).

        Raises:
            NotFound: no such execution.
            Conflict: it has already finished.
        """
        return Execution.from_json(self._call("POST", f"/executions/{_segment(id)}/cancel"))

    def wait(
        self,
        id: str,
        timeout: Optional[float] = 300.0,
        *,
        interval: float = 0.1,
        max_interval: float = 2.0,
    ) -> Execution:
        """Waits for a run's final outcome, polling with a short interval that grows.

        An attempt that ends `failed`, `timed_out` or `lost` is followed by Panda's next
        attempt of the same run (after the retry policy's backoff); `wait` follows it, so what
        it returns is the run's outcome: `succeeded`, `dead` (retries exhausted), `cancelled`
        or `skipped`. It does not raise for a job that failed: look at `status`.

        Args:
            id: An execution's id (any attempt of the run).
            timeout: Seconds to wait in all; `None` waits as long as it takes.
            interval: The first pause between polls, in seconds; each next one is 1.5 times
                longer, up to `max_interval`.
            max_interval: The longest pause between polls.

        Returns:
            The run's last attempt, finished.

        Raises:
            WaitTimeout: the run had not finished within `timeout` (its `execution` is the
                latest attempt as last seen).
            NotFound: no such execution.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = interval
        execution = self.get(id)
        while True:
            if execution.finished:
                if not execution.retried:
                    return execution
                following = self._next_attempt(execution)
                if following is not None:
                    execution = following
                    delay = interval
                    continue
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WaitTimeout(
                        f"execution {execution.id} of job {execution.job_name!r} is still "
                        f"{execution.status} after {timeout:g} s",
                        execution,
                        "wait longer, or look at it later with get()",
                    )
                time.sleep(min(delay, remaining))
            else:
                time.sleep(delay)
            delay = min(delay * 1.5, max_interval)
            execution = self.get(execution.id)

    def _next_attempt(self, execution: Execution) -> Optional[Execution]:
        """The attempt Panda made after `execution` (same run, next number), if it exists yet:
        searched among the job's retries, newest first."""
        before: Optional[str] = None
        for _ in range(20):
            page = self._call(
                "GET",
                f"/jobs/{_segment(execution.job_name)}/executions",
                query={"trigger": "retry", "limit": 1000, "before": before},
            )
            rows = page.get("executions") or []
            for row in rows:
                if row.get("root_id") == execution.root_id and int(row.get("attempt") or 0) == (
                    execution.attempt + 1
                ):
                    return Execution.from_json(row)
            before = page.get("next")
            if not before or not rows:
                return None
            oldest = Execution.from_json(rows[-1]).created_at
            if oldest is not None and execution.created_at is not None and oldest < execution.created_at:
                return None
        return None

    def logs(
        self,
        id: str,
        follow: bool = False,
        *,
        after: Optional[int] = None,
    ) -> Generator[LogLine, None, None]:
        """An execution's output, line by line.

        Args:
            id: The execution's id.
            follow: `False` yields what has been written so far; `True` follows the live log
                (server-sent events) and ends when the execution ends, reconnecting where it
                left off if the stream breaks.
            after: Only lines after this `seq`.

        Yields:
            `LogLine`s (`str(line)` is the text without its newline; `stream` is `stdout`,
            `stderr` or `system`).

        Raises:
            NotFound: no such execution.
            PandaConnectionError: the server could not be reached (following: several times
                in a row).
        """
        if follow:
            return self._follow(id, after)
        return self._pages(id, after)

    def _pages(self, id: str, after: Optional[int]) -> Generator[LogLine, None, None]:
        while True:
            page = self._call(
                "GET",
                f"/executions/{_segment(id)}/logs",
                query={"after": after, "limit": _LOG_PAGE},
            )
            pieces = page.get("lines") or []
            for piece in pieces:
                yield from LogLine.split(piece)
            if len(pieces) < _LOG_PAGE:
                return
            after = int(pieces[-1]["seq"])

    def _follow(self, id: str, after: Optional[int]) -> Generator[LogLine, None, None]:
        path = f"/executions/{_segment(id)}/logs/stream"
        failures = 0
        while True:
            try:
                response = self._open(
                    "GET",
                    path,
                    query={"after": after},
                    accept="text/event-stream",
                    # The server sends a keep-alive every 15 s while a job is quiet.
                    timeout=max(self.timeout, 60.0),
                )
            except PandaConnectionError:
                failures += 1
                if failures > 3:
                    raise
                time.sleep(0.25 * 2**failures)
                continue
            with response:
                events = _sse_events(response)
                while True:
                    try:
                        event = next(events, None)
                    except (OSError, http.client.HTTPException, ValueError):
                        event = None  # the stream broke: reconnect below
                    if event is None:
                        break
                    name, data = event
                    if name == "log":
                        lines = LogLine.split(json.loads(data))
                        after = lines[0].seq
                        failures = 0
                        yield from lines
                    elif name == "end":
                        return
            # The stream ended without its `end` event (the server restarting, a proxy's
            # timeout): pick up after the last line.
            failures += 1
            if failures > 3:
                raise PandaConnectionError(
                    "connection",
                    f"the log stream of execution {id} kept ending before the execution did",
                    "the server may be restarting; follow the logs again later",
                )
            time.sleep(0.25 * 2**failures)

    # -- PostgreSQL ---------------------------------------------------------------------

    def enqueue_in_transaction(
        self,
        connection: Any,
        job: str,
        payload: Any = None,
        *,
        idempotency_key: Optional[str] = None,
        run_at: RunAt = None,
        priority: Optional[int] = None,
        schema: str = "panda",
    ) -> str:
        """Enqueues a job inside the caller's own PostgreSQL transaction: the same as the
        module-level `enqueue_in_transaction` (it does not use this client's URL or token).

        See `panda_client.enqueue_in_transaction`.
        """
        return enqueue_in_transaction(
            connection,
            job,
            payload,
            idempotency_key=idempotency_key,
            run_at=run_at,
            priority=priority,
            schema=schema,
        )


def enqueue_in_transaction(
    connection: Any,
    job: str,
    payload: Any = None,
    *,
    idempotency_key: Optional[str] = None,
    run_at: RunAt = None,
    priority: Optional[int] = None,
    schema: str = "panda",
) -> str:
    """Enqueues a job inside the caller's own PostgreSQL transaction, through the `enqueue`
    SQL function in Panda's schema: the execution exists if and only if the transaction
    commits, and workers are woken when it does.

    Works with any DB-API connection whose driver uses `%s` placeholders (psycopg 3,
    psycopg2) to the database Panda stores its tables in. It does not commit: the caller does.

    Args:
        connection: The caller's open connection (inside its transaction).
        job: The job's name.
        payload: Any JSON-serializable value, or `None`.
        idempotency_key: A repeated key (in this or another transaction) returns the first
            execution's id and enqueues nothing more.
        run_at: Not before this instant (aware `datetime`, `timedelta` from now, RFC 3339).
        priority: From -1000 to 1000.
        schema: The schema holding Panda's tables (`panda` in the recommended install).

    Returns:
        The execution's id (for a repeated key, the existing execution's).

    Raises:
        ValueError: `schema` is not a plain identifier, or `run_at` a naive datetime.
        NotFound: no job has that name (SQLSTATE P0002); the transaction is now aborted.
        InvalidRequest: the payload, key, time or priority is invalid (SQLSTATE 22023); the
            transaction is now aborted.
    """
    sql, params = enqueue_sql(
        job,
        payload,
        idempotency_key=idempotency_key,
        run_at=run_at,
        priority=priority,
        schema=schema,
    )
    return run_enqueue(connection, sql, params)
