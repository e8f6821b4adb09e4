"""enqueue_many: many runs of one job, each item answered in its place.

Needs the batch route (`POST /api/v1/jobs/{name}/executions/batch`); against a server older
than it, these tests fail with NotFound "no such API route".
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from conftest import APPEND_PAYLOAD
from panda_client import BATCH_LIMIT, Item, NotFound


def test_enqueue_many_answers_each_item_in_its_place(client, make_job):
    job = make_job(APPEND_PAYLOAD)
    earlier_key = f"k-{uuid.uuid4()}"
    batch_key = f"k-{uuid.uuid4()}"
    earlier = client.enqueue(job.name, {"n": 0}, idempotency_key=earlier_key)

    results = client.enqueue_many(
        job.name,
        [
            {"n": 1},  # a plain payload
            Item({"n": 2}, idempotency_key=batch_key),
            {"payload": {"n": 3}, "idempotency_key": batch_key},  # the same key again
            Item({"n": 4}, priority=5000),  # out of range
            Item({"n": 5}, idempotency_key=earlier_key),  # a key enqueued before
            {"n": 6, "priority": 1},  # a payload, since it has no "payload" key
        ],
    )

    assert [r.result for r in results] == [
        "created", "created", "duplicate", "invalid", "duplicate", "created",
    ]
    assert [r.index for r in results] == list(range(6))
    assert results[0].created and results[2].duplicate and results[3].invalid
    assert results[2].execution.id == results[1].execution.id
    assert results[4].execution.id == earlier.id
    assert results[3].execution is None
    assert results[3].error.code == "invalid" and "priority" in results[3].error.message
    assert results[5].execution.payload == {"n": 6, "priority": 1}

    for r in (results[0], results[1], results[5]):
        assert client.wait(r.execution.id, timeout=60).status == "succeeded"
    client.wait(earlier.id, timeout=60)
    assert sorted(p["n"] for p in job.payloads()) == [0, 1, 2, 6]


def test_enqueue_many_sends_long_lists_in_chunks(client, make_job):
    job = make_job(APPEND_PAYLOAD)
    count = BATCH_LIMIT + 5

    results = client.enqueue_many(
        job.name, [Item({"i": i}, run_at=timedelta(days=1)) for i in range(count)]
    )

    assert len(results) == count
    assert all(r.created for r in results)
    assert [r.execution.payload["i"] for r in results] == list(range(count))
    assert len({r.execution.id for r in results}) == count


def test_enqueue_many_of_nothing_sends_nothing(client):
    assert client.enqueue_many("no-such-job", []) == []


def test_enqueue_many_of_an_unknown_job_raises_not_found(client, make_job):
    job = make_job(APPEND_PAYLOAD)
    with pytest.raises(NotFound) as caught:
        client.enqueue_many(job.name + "x", [{"n": 1}])
    assert caught.value.message != "no such API route", "the server has no batch route yet"
    assert job.name + "x" in caught.value.message
