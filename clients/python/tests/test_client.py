"""The synchronous client against a real server: each test makes its own job and checks what
the job did (the lines it appended to its file), not only what the API said."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from conftest import APPEND_PAYLOAD
from panda_client import (
    Execution,
    InvalidRequest,
    NotFound,
    Panda,
    PandaConnectionError,
    PandaError,
    Unauthorized,
    WaitTimeout,
)


def test_enqueue_returns_a_queued_execution(client, make_job):
    job = make_job(APPEND_PAYLOAD)
    later = datetime.now(timezone.utc) + timedelta(hours=1)

    execution = client.enqueue(job.name, {"video_id": 7}, run_at=later, priority=5)

    assert isinstance(execution, Execution)
    assert execution.status == "queued"
    assert not execution.finished
    assert execution.job_name == job.name
    assert execution.attempt == 1
    assert execution.root_id == execution.id
    assert execution.payload == {"video_id": 7}
    assert execution.priority == 5
    assert execution.run_at is not None and abs((execution.run_at - later).total_seconds()) < 1
    assert execution.created_at is not None and execution.created_at.tzinfo is not None
    assert execution.started_at is None and execution.finished_at is None
    assert execution.raw["id"] == execution.id
    assert client.get(execution.id).id == execution.id
    client.cancel(execution.id)


def test_wait_sees_success_and_the_job_ran_once(client, make_job):
    job = make_job(APPEND_PAYLOAD)

    execution = client.enqueue(job.name, {"n": 1, "text": "héllo"})
    done = client.wait(execution.id, timeout=60)

    assert done.id == execution.id
    assert done.status == "succeeded" and done.succeeded and done.finished
    assert done.exit_code == 0
    assert done.started_at is not None and done.finished_at is not None
    assert job.payloads() == [{"n": 1, "text": "héllo"}]


def test_a_repeated_idempotency_key_returns_the_same_execution_and_runs_once(client, make_job):
    job = make_job(APPEND_PAYLOAD)
    key = f"order-{uuid.uuid4()}"

    first = client.enqueue(job.name, {"order": 1}, idempotency_key=key)
    second = client.enqueue(job.name, {"order": 1}, idempotency_key=key)
    client.wait(first.id, timeout=60)
    third = client.enqueue(job.name, {"order": 1}, idempotency_key=key)

    assert second.id == first.id and third.id == first.id
    assert first.idempotency_key == key
    assert third.status == "succeeded"
    # Another run of the job, after, writes its own line: the key's run wrote once.
    client.wait(client.enqueue(job.name, {"order": 2}).id, timeout=60)
    assert job.payloads() == [{"order": 1}, {"order": 2}]


def test_an_unknown_job_raises_not_found_with_a_code_a_message_and_a_hint(client, make_job):
    job = make_job(APPEND_PAYLOAD)

    with pytest.raises(NotFound) as caught:
        client.enqueue(job.name + "x", {"n": 1})

    err = caught.value
    assert isinstance(err, PandaError)
    assert err.status == 404
    assert err.code == "not_found"
    assert job.name + "x" in err.message
    assert err.hint  # the closest name, or where to look
    assert err.message in str(err) and err.hint in str(err)


def test_an_invalid_priority_raises_invalid_request(client, make_job):
    job = make_job(APPEND_PAYLOAD)

    with pytest.raises(InvalidRequest) as caught:
        client.enqueue(job.name, {"n": 1}, priority=5000)

    assert caught.value.status == 400
    assert caught.value.code == "invalid"
    assert "priority" in caught.value.message
    assert job.lines() == []


def test_a_naive_run_at_is_refused_before_sending():
    panda = Panda("http://127.0.0.1:9", "token")
    with pytest.raises(ValueError, match="timezone"):
        panda.enqueue("any", run_at=datetime.now())


def test_a_bad_token_raises_unauthorized(client, make_job):
    job = make_job(APPEND_PAYLOAD)
    intruder = Panda(client.url, "not-a-token")

    with pytest.raises(Unauthorized) as caught:
        intruder.enqueue(job.name, {"n": 1})

    assert caught.value.status == 401
    assert caught.value.code == "unauthorized"
    assert caught.value.hint
    assert job.lines() == []


def test_no_server_raises_a_connection_error():
    panda = Panda("http://127.0.0.1:9", "token", timeout=5)
    with pytest.raises(PandaConnectionError) as caught:
        panda.get(str(uuid.uuid4()))
    assert caught.value.code == "connection" and caught.value.status is None


def test_a_client_without_url_or_token_says_what_is_missing(monkeypatch):
    monkeypatch.delenv("PANDA_URL", raising=False)
    monkeypatch.delenv("PANDA_TOKEN", raising=False)
    with pytest.raises(ValueError, match="PANDA_URL"):
        Panda()
    with pytest.raises(ValueError, match="PANDA_TOKEN"):
        Panda("http://127.0.0.1:7070")


def test_get_of_an_unknown_execution_raises_not_found(client):
    with pytest.raises(NotFound):
        client.get(str(uuid.uuid4()))
    with pytest.raises(InvalidRequest):
        client.get("not-an-id")


def test_cancel_a_queued_execution_and_a_running_one(client, make_job):
    job = make_job('echo started >> "$OUT"; sleep 30; echo finished >> "$OUT"')

    queued = client.enqueue(job.name, run_at=timedelta(hours=1))
    cancelled = client.cancel(queued.id)
    assert cancelled.status == "cancelled"
    assert client.wait(queued.id, timeout=5).status == "cancelled"

    running = client.enqueue(job.name)
    assert job.wait_for_lines(1) == ["started"]
    client.cancel(running.id)
    ended = client.wait(running.id, timeout=30)
    assert ended.status == "cancelled"
    assert job.lines() == ["started"]


def test_logs_show_the_jobs_output_lines(client, make_job):
    job = make_job('echo one; echo two >&2; echo "$PANDA_PAYLOAD"')

    execution = client.enqueue(job.name, {"say": "three"})
    client.wait(execution.id, timeout=60)
    lines = [line for line in client.logs(execution.id) if line.stream != "system"]

    # Each stream in order; how the two interleave depends on when each was read.
    assert [str(line) for line in lines if line.stream == "stdout"] == ["one", '{"say":"three"}']
    assert [str(line) for line in lines if line.stream == "stderr"] == ["two"]
    assert all(line.text.endswith("\n") for line in lines)
    assert [line.seq for line in lines] == sorted(line.seq for line in lines)
    last = lines[-1].seq
    assert [str(line) for line in client.logs(execution.id, after=last)] == []


def test_logs_follow_streams_live_lines_and_ends_with_the_execution(client, make_job):
    job = make_job("echo first; sleep 1; echo second; sleep 1; echo third")

    execution = client.enqueue(job.name)
    seen = []
    follower = threading.Thread(
        target=lambda: seen.extend(client.logs(execution.id, follow=True)), daemon=True
    )
    started = time.monotonic()
    follower.start()
    follower.join(timeout=60)

    assert not follower.is_alive(), "following the logs did not end with the execution"
    assert time.monotonic() - started >= 1.5  # it streamed while the job ran
    assert [str(line) for line in seen if line.stream != "system"] == ["first", "second", "third"]
    assert client.get(execution.id).finished


def test_wait_timeout_raises_wait_timeout(client, make_job):
    job = make_job("sleep 30")

    execution = client.enqueue(job.name)
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as caught:
        client.wait(execution.id, timeout=0.5)

    assert time.monotonic() - started < 5
    assert caught.value.code == "wait_timeout"
    assert caught.value.execution.id == execution.id
    assert caught.value.execution.status in ("queued", "running")
    client.cancel(execution.id)


def test_wait_follows_retries_to_the_runs_final_outcome(client, make_job):
    # Fails on its first attempt, succeeds on its second.
    job = make_job(
        'n=$(wc -l < "$OUT" 2>/dev/null || echo 0); echo "attempt $((n + 1))" >> "$OUT"; '
        '[ "$n" -ge 1 ]',
        max_attempts=3,
    )

    first = client.enqueue(job.name)
    done = client.wait(first.id, timeout=60)

    assert done.status == "succeeded"
    assert done.attempt == 2
    assert done.root_id == first.id and done.id != first.id
    assert job.lines() == ["attempt 1", "attempt 2"]
    assert client.get(first.id).status == "failed"


def test_wait_ends_dead_when_retries_run_out(client, make_job):
    job = make_job('echo ran >> "$OUT"; exit 3', max_attempts=2)

    first = client.enqueue(job.name)
    done = client.wait(first.id, timeout=60)

    assert done.status == "dead"
    assert done.attempt == 2 and done.exit_code == 3
    assert done.finished and not done.retried
    assert job.lines() == ["ran", "ran"]


def test_error_bodies_map_to_typed_errors():
    import http.client
    from panda_client import Conflict, Unavailable
    from panda_client._errors import error_from_response

    headers = http.client.HTTPMessage()
    headers["retry-after"] = "2"
    body = b'{"error": {"code": "store_unavailable", "message": "down", "hint": "wait"}}'
    err = error_from_response(503, body, headers)
    assert isinstance(err, Unavailable)
    assert (err.code, err.message, err.hint, err.status, err.retry_after) == (
        "store_unavailable", "down", "wait", 503, 2.0,
    )
    assert str(err) == "down (hint: wait)"
    assert isinstance(error_from_response(409, b'{"error": {"code": "conflict", "message": "m"}}'), Conflict)
    assert str(error_from_response(409, b'{"error": {"code": "conflict", "message": "m"}}')) == "m"
    other = error_from_response(502, b"<html>bad gateway</html>")
    assert type(other) is PandaError and other.status == 502 and "bad gateway" in other.message
