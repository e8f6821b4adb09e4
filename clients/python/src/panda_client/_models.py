"""The typed views of what the server answers with: executions, log lines, batch results."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional, Union

from ._errors import PandaError

#: The statuses an execution is still moving in; every other status is final for its attempt.
ACTIVE_STATUSES = frozenset({"queued", "running"})

#: The final statuses of an attempt after which Panda makes another attempt of the same run
#: (when the retry policy has attempts left; on the last attempt the status is `dead`).
RETRIED_STATUSES = frozenset({"failed", "timed_out", "lost"})

_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:\d{2})$"
)


def parse_time(value: Any) -> Optional[datetime]:
    """Parses an RFC 3339 timestamp as the server writes it (nanoseconds, `Z`) into an aware
    `datetime` (microseconds). `None` stays `None`; text that is not a timestamp gives `None`.

    Args:
        value: The timestamp text, or `None`.

    Returns:
        A timezone-aware `datetime`, or `None`.
    """
    if not isinstance(value, str):
        return None
    match = _RFC3339.match(value)
    if not match:
        return None
    date, time, fraction, offset = match.groups()
    micro = (fraction or "")[:6].ljust(6, "0")
    offset = "+00:00" if offset in ("Z", "z") else offset
    try:
        return datetime.fromisoformat(f"{date}T{time}.{micro}{offset}")
    except ValueError:
        return None


def format_time(value: Union[datetime, timedelta, str]) -> str:
    """An instant as RFC 3339 text for the server.

    Args:
        value: A timezone-aware `datetime`; a `timedelta` (that long from now); or RFC 3339
            text, sent as it is.

    Returns:
        RFC 3339 text.

    Raises:
        ValueError: for a naive `datetime` (which instant it means is a guess), or another type.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, timedelta):
        value = datetime.now(timezone.utc) + value
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                "run_at is a naive datetime; give one with a timezone, "
                "e.g. datetime.now(timezone.utc) + timedelta(minutes=5)"
            )
        return value.isoformat()
    raise ValueError(
        f"run_at must be a datetime, a timedelta or RFC 3339 text, not {type(value).__name__}"
    )


@dataclass(frozen=True)
class Execution:
    """One attempt of one run of a job, as the server last reported it.

    Attributes:
        id: This attempt's id (a UUID, as text).
        job_name: The job it runs.
        status: `queued`, `running`, `succeeded`, `failed`, `timed_out`, `cancelled`, `lost`,
            `dead` or `skipped`.
        attempt: 1 for the first attempt of a run.
        exit_code: The process's or container's exit code, once it ended.
        reason: Why it ended as it did, in words, when there is more to say.
        created_at: When it was recorded.
        started_at: When a worker started it.
        finished_at: When it reached a final status.
        payload: The JSON the job gets as `PANDA_PAYLOAD`.
        root_id: The first attempt's id: the same for every attempt of one run.
        idempotency_key: The key the enqueue was deduplicated by, if any.
        priority: Higher is claimed first.
        run_at: Not started before this instant.
        raw: Everything the server sent, for fields not named here.
    """

    id: str
    job_name: str
    status: str
    attempt: int
    exit_code: Optional[int]
    reason: Optional[str]
    created_at: Optional[datetime]
    started_at: Optional[datetime]
    finished_at: Optional[datetime]
    payload: Any
    root_id: str
    idempotency_key: Optional[str] = None
    priority: int = 0
    run_at: Optional[datetime] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "Execution":
        """Builds an Execution from the server's JSON object.

        Args:
            data: An execution as the API returns it.

        Returns:
            The typed view, with the whole object kept in `raw`.
        """
        if not isinstance(data, dict) or "id" not in data:
            raise PandaError("protocol", f"expected an execution, got {data!r:.200}")
        return cls(
            id=str(data["id"]),
            job_name=str(data.get("job_name", "")),
            status=str(data.get("status", "")),
            attempt=int(data.get("attempt") or 1),
            exit_code=data.get("exit_code"),
            reason=data.get("reason"),
            created_at=parse_time(data.get("created_at")),
            started_at=parse_time(data.get("started_at")),
            finished_at=parse_time(data.get("finished_at")),
            payload=data.get("payload"),
            root_id=str(data.get("root_id") or data["id"]),
            idempotency_key=data.get("idempotency_key"),
            priority=int(data.get("priority") or 0),
            run_at=parse_time(data.get("run_at")),
            raw=data,
        )

    @property
    def finished(self) -> bool:
        """Whether this attempt has ended (any status but `queued` and `running`).

        A `failed`, `timed_out` or `lost` attempt is followed by another attempt of the same run
        while its retry policy allows; `Panda.wait` follows the run to its final outcome.
        """
        return self.status not in ACTIVE_STATUSES

    @property
    def succeeded(self) -> bool:
        """Whether this attempt exited with code 0."""
        return self.status == "succeeded"

    @property
    def retried(self) -> bool:
        """Whether another attempt of the run follows this finished one."""
        return self.status in RETRIED_STATUSES


@dataclass(frozen=True)
class LogLine:
    """A line of an execution's output.

    Attributes:
        seq: The position in the execution's log of the piece of output it came in (lines
            read together share it); pass it as `after` to read what follows that piece.
        stream: `stdout`, `stderr`, or `system` (Panda's own lines).
        text: The text as the server sent it: usually one line with its newline.
        at: When it was read.
    """

    seq: int
    stream: str
    text: str
    at: Optional[datetime] = None

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "LogLine":
        """Builds a LogLine from the server's JSON object.

        Args:
            data: A log line as the API returns it (`seq`, `stream`, `at`, `text`).

        Returns:
            The typed view.
        """
        text = data.get("text")
        if text is None:
            text = data.get("line", "")
        return cls(
            seq=int(data.get("seq", 0)),
            stream=str(data.get("stream", "")),
            text=str(text),
            at=parse_time(data.get("at")),
        )

    @classmethod
    def split(cls, data: Dict[str, Any]) -> List["LogLine"]:
        """The lines of one piece of output as the server sent it (a piece read at once may
        hold several lines), each with the piece's `seq`, `stream` and `at`.

        Args:
            data: A log line as the API returns it.

        Returns:
            One `LogLine` per line, each text with its newline (the last may have none).
        """
        whole = cls.from_json(data)
        parts = whole.text.split("\n")
        texts = [part + "\n" for part in parts[:-1]]
        if parts[-1] or not texts:
            texts.append(parts[-1])
        return [cls(seq=whole.seq, stream=whole.stream, text=text, at=whole.at) for text in texts]

    @property
    def line(self) -> str:
        """The text without its trailing newline."""
        return self.text.rstrip("\r\n")

    def __str__(self) -> str:
        return self.line


@dataclass(frozen=True)
class Item:
    """One enqueue of `enqueue_many`, with its options.

    Plain payloads may be passed to `enqueue_many` as they are; use `Item` to give an item its
    own idempotency key, start time, priority or environment (a dict with a `payload` key and
    only these other keys means the same).

    Attributes:
        payload: The JSON the job gets as `PANDA_PAYLOAD` (`None`: none).
        idempotency_key: A second enqueue with the same key returns the first execution.
        run_at: Not before this instant (aware `datetime`, `timedelta` from now, or RFC 3339).
        priority: From -1000 to 1000; overrides the job's.
        env: Environment overrides for this execution.
    """

    payload: Any = None
    idempotency_key: Optional[str] = None
    run_at: Union[datetime, timedelta, str, None] = None
    priority: Optional[int] = None
    env: Optional[Dict[str, str]] = None


@dataclass(frozen=True)
class BatchItem:
    """The answer to one item of `enqueue_many`, in the item's place.

    Attributes:
        index: The item's position in the list given to `enqueue_many`.
        result: `created`, `duplicate` (an earlier enqueue had its idempotency key; `execution`
            is that one) or `invalid` (nothing enqueued; `error` says why).
        execution: The execution, for `created` and `duplicate`.
        error: Why the item was refused, for `invalid`.
    """

    index: int
    result: str
    execution: Optional[Execution] = None
    error: Optional[PandaError] = None

    @property
    def created(self) -> bool:
        """Whether this item made a new execution."""
        return self.result == "created"

    @property
    def duplicate(self) -> bool:
        """Whether an earlier enqueue with the same idempotency key answered instead."""
        return self.result == "duplicate"

    @property
    def invalid(self) -> bool:
        """Whether the item was refused (see `error`)."""
        return self.result == "invalid"
