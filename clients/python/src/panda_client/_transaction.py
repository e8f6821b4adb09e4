"""Enqueueing inside the caller's own PostgreSQL transaction, through Panda's `enqueue` SQL
function: the job exists if and only if the transaction commits."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any, Optional, Tuple, Union

from ._errors import InvalidRequest, NotFound, PandaError
from ._models import format_time

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")

RunAt = Union[datetime, timedelta, str, None]


def quote_schema(schema: str) -> str:
    """The schema name as a quoted SQL identifier, after checking it is a plain identifier.

    Args:
        schema: The schema holding Panda's tables (`panda` in the recommended install).

    Returns:
        The name in double quotes.

    Raises:
        ValueError: when it is not a plain identifier (letters, digits, `_`, `$`; at most 63
            bytes; not starting with a digit).
    """
    if (
        not isinstance(schema, str)
        or not _IDENTIFIER.match(schema)
        or len(schema.encode("utf-8")) > 63
    ):
        raise ValueError(
            f"schema {schema!r} is not a plain SQL identifier "
            "(letters, digits, _ and $, not starting with a digit, at most 63 bytes)"
        )
    return f'"{schema}"'


def enqueue_sql(
    job: str,
    payload: Any = None,
    *,
    idempotency_key: Optional[str] = None,
    run_at: RunAt = None,
    priority: Optional[int] = None,
    schema: str = "panda",
) -> Tuple[str, Tuple[Any, ...]]:
    """The statement and parameters (`%s` placeholders) that enqueue `job` through SQL.

    Args:
        job: The job's name.
        payload: JSON-serializable payload, or `None`.
        idempotency_key: Deduplicates the enqueue, as over HTTP.
        run_at: Not before this instant.
        priority: From -1000 to 1000.
        schema: The schema holding Panda's tables and its `enqueue` function.

    Returns:
        `(sql, params)` for any DB-API driver with the `format` paramstyle (psycopg, psycopg2).
    """
    sql = (
        f"SELECT {quote_schema(schema)}.enqueue(%s::text, %s::jsonb, "
        "idempotency_key => %s::text, run_at => %s::timestamptz, priority => %s::integer)"
    )
    params = (
        job,
        None if payload is None else json.dumps(payload),
        idempotency_key,
        None if run_at is None else format_time(run_at),
        priority,
    )
    return sql, params


def _sqlstate(err: BaseException) -> Optional[str]:
    # psycopg 3 names it `sqlstate`, psycopg2 `pgcode`.
    return getattr(err, "sqlstate", None) or getattr(err, "pgcode", None)


def translate_error(err: BaseException) -> Optional[PandaError]:
    """The typed error for a database error the `enqueue` function raised, if it is one of its
    own: SQLSTATE P0002 (no such job) is `NotFound`, 22023 (invalid input) is `InvalidRequest`.

    Args:
        err: An exception from the driver.

    Returns:
        The `PandaError` (with the server's message and hint), or `None` for any other error.
    """
    state = _sqlstate(err)
    if state not in ("P0002", "22023"):
        return None
    diag = getattr(err, "diag", None)
    message = getattr(diag, "message_primary", None) or str(err).strip().splitlines()[0]
    hint = getattr(diag, "message_hint", None)
    if state == "P0002":
        return NotFound("not_found", message, hint, None)
    return InvalidRequest("invalid", message, hint, None)


def run_enqueue(connection: Any, sql: str, params: Tuple[Any, ...]) -> str:
    """Runs the enqueue statement on a DB-API connection and returns the execution's id."""
    cursor = connection.cursor()
    try:
        try:
            cursor.execute(sql, params)
        except Exception as err:
            typed = translate_error(err)
            if typed is not None:
                raise typed from err
            raise
        row = cursor.fetchone()
    finally:
        cursor.close()
    if not row or row[0] is None:
        raise PandaError("protocol", "the enqueue function returned no execution id")
    return str(row[0])


async def run_enqueue_async(connection: Any, sql: str, params: Tuple[Any, ...]) -> str:
    """`run_enqueue` for an asynchronous connection (psycopg's `AsyncConnection`); also takes
    a synchronous one."""
    import inspect

    cursor = connection.cursor()
    try:
        try:
            done = cursor.execute(sql, params)
            if inspect.isawaitable(done):
                await done
        except Exception as err:
            typed = translate_error(err)
            if typed is not None:
                raise typed from err
            raise
        row = cursor.fetchone()
        if inspect.isawaitable(row):
            row = await row
    finally:
        closed = cursor.close()
        if inspect.isawaitable(closed):
            await closed
    if not row or row[0] is None:
        raise PandaError("protocol", "the enqueue function returned no execution id")
    return str(row[0])
