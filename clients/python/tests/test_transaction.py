"""enqueue_in_transaction: the job is enqueued if and only if the caller's transaction commits.

Runs when the server is on PostgreSQL (PANDA_TEST_PG_URL, PANDA_TEST_PG_SCHEMA) and psycopg
is installed; needs the `enqueue` SQL function in Panda's schema.
"""

from __future__ import annotations

import os
import uuid

import pytest

from conftest import APPEND_PAYLOAD
from panda_client import InvalidRequest, NotFound, enqueue_in_transaction
from panda_client._transaction import enqueue_sql, quote_schema


@pytest.fixture
def pg():
    """A connection factory to the server's database, and the schema of Panda's tables."""
    url = os.environ.get("PANDA_TEST_PG_URL")
    if not url:
        pytest.skip("PANDA_TEST_PG_URL is not set: the server under test is not on PostgreSQL")
    psycopg = pytest.importorskip("psycopg")
    schema = os.environ.get("PANDA_TEST_PG_SCHEMA", "panda")
    connections = []

    def connect():
        connection = psycopg.connect(url)
        connections.append(connection)
        return connection

    yield connect, schema
    for connection in connections:
        connection.close()


def test_a_rolled_back_transaction_leaves_nothing(client, make_job, pg):
    connect, schema = pg
    job = make_job(APPEND_PAYLOAD)

    with connect() as orders:
        orders.execute("SELECT 1")  # the caller's own work, in the same transaction
        id = enqueue_in_transaction(orders, job.name, {"order": "rolled-back"}, schema=schema)
        orders.rollback()

    with pytest.raises(NotFound):
        client.get(id)
    # A later enqueue of the same job runs; by then the rolled-back one would have too.
    client.wait(client.enqueue(job.name, {"order": "canary"}).id, timeout=60)
    assert job.payloads() == [{"order": "canary"}]


def test_a_committed_transaction_runs_the_job_once(client, make_job, pg):
    connect, schema = pg
    job = make_job(APPEND_PAYLOAD)

    with connect() as orders:
        id = enqueue_in_transaction(
            orders, job.name, {"order": 42}, priority=10, schema=schema
        )
        # Not visible to the server before the commit.
        with pytest.raises(NotFound):
            client.get(id)
        orders.commit()

    done = client.wait(id, timeout=60)
    assert done.status == "succeeded"
    assert done.payload == {"order": 42} and done.priority == 10
    assert job.payloads() == [{"order": 42}]


def test_a_repeated_key_in_two_transactions_runs_once(client, make_job, pg):
    connect, schema = pg
    job = make_job(APPEND_PAYLOAD)
    key = f"order-{uuid.uuid4()}"

    with connect() as first:
        one = client.enqueue_in_transaction(first, job.name, {"order": 7}, idempotency_key=key, schema=schema)
        first.commit()
    with connect() as second:
        two = client.enqueue_in_transaction(second, job.name, {"order": 7}, idempotency_key=key, schema=schema)
        second.commit()

    assert one == two
    assert client.wait(one, timeout=60).status == "succeeded"
    assert client.enqueue(job.name, {"order": 7}, idempotency_key=key).id == one
    client.wait(client.enqueue(job.name, {"order": "after"}).id, timeout=60)
    assert job.payloads() == [{"order": 7}, {"order": "after"}]


def test_sql_errors_are_typed_with_the_servers_hint(make_job, pg):
    connect, schema = pg
    job = make_job(APPEND_PAYLOAD)

    with connect() as connection:
        with pytest.raises(NotFound) as caught:
            enqueue_in_transaction(connection, job.name + "x", schema=schema)
        assert job.name + "x" in caught.value.message
        assert caught.value.hint
        connection.rollback()
        with pytest.raises(InvalidRequest) as caught:
            enqueue_in_transaction(connection, job.name, priority=5000, schema=schema)
        assert "priority" in caught.value.message
        connection.rollback()


def test_the_schema_must_be_a_plain_identifier():
    assert quote_schema("panda") == '"panda"'
    assert quote_schema("clients_py_1") == '"clients_py_1"'
    for bad in ('panda"; DROP TABLE x; --', "1panda", "", "a.b", "x" * 64):
        with pytest.raises(ValueError):
            quote_schema(bad)
    sql, params = enqueue_sql("job", {"a": 1}, idempotency_key="k", schema="panda")
    assert sql.startswith('SELECT "panda".enqueue(')
    assert params == ("job", '{"a": 1}', "k", None, None)
