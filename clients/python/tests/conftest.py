"""Fixtures for the suite, which runs against a real Panda server.

The environment names it (crates/panda/tests/clients.rs sets these):
- PANDA_URL, PANDA_TOKEN: the server and an admin token;
- PANDA_TEST_DIR: a scratch directory the jobs (local processes, run by `sh -c`) write to,
  so that a test checks what a job did;
- PANDA_TEST_PG_URL, PANDA_TEST_PG_SCHEMA: when the server is on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import pathlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

from panda_client import NotFound, Panda

#: A short wait for a fixture's own polling, so that a broken server fails the test, never hangs it.
SETTLE_S = 60.0


@dataclass
class Job:
    """A job made for one test: its name and the file its script appends to (`$OUT`)."""

    name: str
    out: pathlib.Path
    spec: Dict[str, Any] = field(repr=False, default_factory=dict)

    def lines(self) -> List[str]:
        """The lines the job's runs wrote to `$OUT` so far."""
        return read_lines(self.out)

    def payloads(self) -> List[Any]:
        """The lines, each parsed as JSON (a job that appends `$PANDA_PAYLOAD`)."""
        return [json.loads(line) for line in self.lines()]

    def wait_for_lines(self, n: int, timeout: float = SETTLE_S) -> List[str]:
        """Waits until `$OUT` has at least `n` lines and returns them."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.lines()
            if len(lines) >= n or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)


def read_lines(path: pathlib.Path) -> List[str]:
    """The lines of a side-effect file, none when the job never wrote it."""
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


@pytest.fixture(scope="session")
def test_dir() -> pathlib.Path:
    """The scratch directory the jobs write to."""
    path = os.environ.get("PANDA_TEST_DIR")
    if not path:
        pytest.fail("PANDA_TEST_DIR is not set: run the suite through crates/panda/tests/clients.rs, or set PANDA_URL, PANDA_TOKEN and PANDA_TEST_DIR")
    return pathlib.Path(path)


@pytest.fixture(scope="session")
def client() -> Panda:
    """A client of the server under test (PANDA_URL, PANDA_TOKEN)."""
    if not os.environ.get("PANDA_URL") or not os.environ.get("PANDA_TOKEN"):
        pytest.fail("PANDA_URL and PANDA_TOKEN are not set: the suite needs a running Panda server")
    return Panda(timeout=30.0)


def unique_name(prefix: str = "py") -> str:
    """A job name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_job(client: Panda, test_dir: pathlib.Path) -> Iterator[Callable[..., Job]]:
    """Makes jobs with unique names that run `sh -c SCRIPT`, and deletes them afterwards.

    The script sees `$OUT`, a file of its own in PANDA_TEST_DIR, and `$PANDA_PAYLOAD`.
    `max_attempts` is 1 unless given (a failure is final at once); retries wait
    `backoff_ms`.
    """
    made: List[str] = []

    def make(
        script: str,
        *,
        name: Optional[str] = None,
        max_attempts: int = 1,
        backoff_ms: int = 100,
        env: Optional[Dict[str, str]] = None,
    ) -> Job:
        name = name or unique_name()
        out = test_dir / f"{name}.out"
        out.unlink(missing_ok=True)  # a fixed name's file from an earlier session
        spec = {
            "name": name,
            "runtime": {"kind": "process", "argv": ["sh", "-c", script]},
            "env": {"OUT": str(out), **(env or {})},
            "retry": {
                "max_attempts": max_attempts,
                "backoff_base_ms": backoff_ms,
                "backoff_cap_ms": backoff_ms,
            },
            "concurrency": "allow",
            "timeout_ms": 120_000,
        }
        client.create_job(spec)
        made.append(name)
        return Job(name=name, out=out, spec=spec)

    yield make
    for name in made:
        try:
            client.delete_job(name)
        except NotFound:
            pass


#: A job script that appends its payload, one line per run.
APPEND_PAYLOAD = 'printf "%s\\n" "$PANDA_PAYLOAD" >> "$OUT"'
