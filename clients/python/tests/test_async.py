"""AsyncPanda: the same calls, awaited."""

from __future__ import annotations

import asyncio

import pytest

from conftest import APPEND_PAYLOAD
from panda_client import AsyncPanda, NotFound, WaitTimeout


def test_async_enqueue_wait_and_logs(make_job):
    job = make_job(APPEND_PAYLOAD + "; echo done")

    async def main():
        panda = AsyncPanda()
        execution = await panda.enqueue(job.name, {"n": "async"})
        done = await panda.wait(execution.id, timeout=60)
        lines = [str(line) async for line in panda.logs(execution.id, follow=True)]
        return execution, done, lines

    execution, done, lines = asyncio.run(main())

    assert execution.status == "queued"
    assert done.id == execution.id and done.status == "succeeded"
    assert job.payloads() == [{"n": "async"}]
    assert "done" in lines


def test_async_errors_and_wait_timeout(make_job):
    job = make_job("sleep 30")

    async def main():
        panda = AsyncPanda()
        with pytest.raises(NotFound):
            await panda.enqueue(job.name + "x")
        execution = await panda.enqueue(job.name)
        with pytest.raises(WaitTimeout):
            await panda.wait(execution.id, timeout=0.3)
        return await panda.cancel(execution.id)

    cancelled = asyncio.run(main())
    assert cancelled.job_name == job.name
