"""The asynchronous client: `AsyncPanda`, the synchronous client's calls run in threads."""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Dict, Iterable, List, Mapping, Optional, cast

from ._client import Panda, RunAt
from ._errors import WaitTimeout
from ._models import BatchItem, Execution, LogLine
from ._transaction import enqueue_sql, run_enqueue_async

__all__ = ["AsyncPanda"]

_DONE = object()


class AsyncPanda:
    """The `Panda` client for asyncio code: the same methods, awaited.

    Each HTTP call runs in a worker thread (`asyncio.to_thread`), so the event loop never
    blocks; `wait` sleeps with `asyncio.sleep`, and `logs` is an async iterator.

    Args:
        url: The server; defaults to `PANDA_URL`.
        token: An API token; defaults to `PANDA_TOKEN`.
        timeout: Seconds each HTTP request may take.

    Example:
        >>> panda = AsyncPanda()
        >>> execution = await panda.enqueue("send-email", {"to": "ada@example.com"})
        >>> done = await panda.wait(execution.id, timeout=60)
    """

    def __init__(
        self,
        url: Optional[str] = None,
        token: Optional[str] = None,
        *,
        timeout: float = 30.0,
    ) -> None:
        self.sync = Panda(url, token, timeout=timeout)

    def __repr__(self) -> str:
        return f"AsyncPanda(url={self.sync.url!r})"

    async def create_job(self, spec: Mapping[str, Any]) -> Dict[str, Any]:
        """Creates a job; see `Panda.create_job`."""
        return await asyncio.to_thread(self.sync.create_job, spec)

    async def delete_job(self, name: str) -> None:
        """Deletes a job; see `Panda.delete_job`."""
        await asyncio.to_thread(self.sync.delete_job, name)

    async def enqueue(
        self,
        job: str,
        payload: Any = None,
        *,
        idempotency_key: Optional[str] = None,
        run_at: RunAt = None,
        priority: Optional[int] = None,
        env: Optional[Mapping[str, str]] = None,
    ) -> Execution:
        """Enqueues one run of a job; see `Panda.enqueue`.

        Returns:
            The execution (status `queued`), or the earlier one its idempotency key names.
        """
        return await asyncio.to_thread(
            lambda: self.sync.enqueue(
                job,
                payload,
                idempotency_key=idempotency_key,
                run_at=run_at,
                priority=priority,
                env=env,
            )
        )

    async def enqueue_many(self, job: str, items: Iterable[Any]) -> List[BatchItem]:
        """Enqueues many runs of one job, each item answered in its place; see
        `Panda.enqueue_many`."""
        items = list(items)
        return await asyncio.to_thread(self.sync.enqueue_many, job, items)

    async def get(self, id: str) -> Execution:
        """Reads one execution; see `Panda.get`."""
        return await asyncio.to_thread(self.sync.get, id)

    async def cancel(self, id: str) -> Execution:
        """Cancels an execution; see `Panda.cancel`."""
        return await asyncio.to_thread(self.sync.cancel, id)

    async def wait(
        self,
        id: str,
        timeout: Optional[float] = 300.0,
        *,
        interval: float = 0.1,
        max_interval: float = 2.0,
    ) -> Execution:
        """Waits for a run's final outcome, following its retries; see `Panda.wait`.

        Raises:
            WaitTimeout: the run had not finished within `timeout`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = interval
        execution = await self.get(id)
        while True:
            if execution.finished:
                if not execution.retried:
                    return execution
                following = await asyncio.to_thread(self.sync._next_attempt, execution)
                if following is not None:
                    execution = following
                    delay = interval
                    continue
            pause = delay
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WaitTimeout(
                        f"execution {execution.id} of job {execution.job_name!r} is still "
                        f"{execution.status} after {timeout:g} s",
                        execution,
                        "wait longer, or look at it later with get()",
                    )
                pause = min(delay, remaining)
            await asyncio.sleep(pause)
            delay = min(delay * 1.5, max_interval)
            execution = await self.get(execution.id)

    async def logs(
        self,
        id: str,
        follow: bool = False,
        *,
        after: Optional[int] = None,
    ) -> AsyncIterator[LogLine]:
        """An execution's output, line by line, as an async iterator; see `Panda.logs`.

        Example:
            >>> async for line in panda.logs(execution.id, follow=True):
            ...     print(line)
        """
        lines = self.sync.logs(id, follow, after=after)
        try:
            while True:
                line = await asyncio.to_thread(next, lines, _DONE)
                if line is _DONE:
                    return
                yield cast(LogLine, line)
        finally:
            try:
                lines.close()
            except ValueError:
                pass  # still running in its thread (a cancelled read): it ends on its own

    async def enqueue_in_transaction(
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
        """Enqueues a job inside the caller's PostgreSQL transaction; see
        `panda_client.enqueue_in_transaction`. Takes an asynchronous connection (psycopg's
        `AsyncConnection`) or a synchronous one.

        Returns:
            The execution's id.
        """
        sql, params = enqueue_sql(
            job,
            payload,
            idempotency_key=idempotency_key,
            run_at=run_at,
            priority=priority,
            schema=schema,
        )
        return await run_enqueue_async(connection, sql, params)
