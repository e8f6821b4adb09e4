"""Python client for Panda, the self-hosted background-job platform.

    >>> from panda_client import Panda
    >>> panda = Panda()  # PANDA_URL and PANDA_TOKEN from the environment
    >>> execution = panda.enqueue("transcode-video", {"video_id": 42})
    >>> panda.wait(execution.id, timeout=600).status
    'succeeded'

Standard library only; `AsyncPanda` is the same for asyncio code.
"""

from ._async import AsyncPanda
from ._client import BATCH_LIMIT, Panda, enqueue_in_transaction
from ._errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    PandaConnectionError,
    PandaError,
    Unauthorized,
    Unavailable,
    WaitTimeout,
)
from ._models import BatchItem, Execution, Item, LogLine

__version__ = "0.1.0"

__all__ = [
    "AsyncPanda",
    "BATCH_LIMIT",
    "BatchItem",
    "Conflict",
    "Execution",
    "InvalidRequest",
    "Item",
    "LogLine",
    "NotFound",
    "Panda",
    "PandaConnectionError",
    "PandaError",
    "Unauthorized",
    "Unavailable",
    "WaitTimeout",
    "enqueue_in_transaction",
]
