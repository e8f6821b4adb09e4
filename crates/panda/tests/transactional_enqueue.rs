//! The transactional enqueue on PostgreSQL: an application enqueues with the SQL function
//! `enqueue` inside its own transaction, on its own connection, and a real `panda server` on
//! the same database runs what committed. What ran is read from what the job itself wrote.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use panda_core::Status;
use sqlx::Connection;
use support::runs::{all_of, wait_until};
use support::{Start, backend::Backend, succeeded};

/// The application's own connection: the plain database URL, no search path of Panda's.
async fn app_connection() -> sqlx::PgConnection {
    let url = std::env::var(panda_store::testing::DATABASE_URL_ENV).expect("the database URL");
    sqlx::PgConnection::connect(&url)
        .await
        .expect("connect as the application")
}

/// The payloads the job has run with, one per line, in the order it ran them.
fn runs(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_enqueue_exists_if_and_only_if_the_applications_transaction_commits() {
    let Some(backend) = Backend::postgres("txenqueue").await else {
        return;
    };
    let schema = backend
        .pg
        .as_ref()
        .and_then(|pg| pg.schema())
        .expect("a schema of its own")
        .to_owned();
    let server = backend.node(Start::server(), "tx-node", &[]);
    let work = tempfile::tempdir().expect("a temp dir");
    let file = work.path().join("runs");
    let exec = format!("sh -c 'echo \"$PANDA_PAYLOAD\" >> {}'", file.display());
    succeeded(&server.panda(&["job", "create", "--name", "send-receipt", "--exec", &exec]));
    let enqueue = format!("SELECT \"{schema}\".enqueue($1, $2::jsonb, idempotency_key => $3)");

    let mut app = app_connection().await;
    // The application's order and its receipt in one transaction.
    sqlx::query("CREATE TEMP TABLE orders (id int)")
        .execute(&mut app)
        .await
        .expect("the application's table");

    // Rolled back: neither the order nor the job.
    let mut tx = app.begin().await.expect("begin");
    sqlx::query("INSERT INTO orders VALUES (1)")
        .execute(&mut *tx)
        .await
        .expect("order 1");
    let rolled_back: uuid::Uuid = sqlx::query_scalar(sqlx::AssertSqlSafe(enqueue.clone()))
        .bind("send-receipt")
        .bind(r#"{"order": 1}"#)
        .bind("order-1")
        .fetch_one(&mut *tx)
        .await
        .expect("enqueue order 1");
    tx.rollback().await.expect("roll back");

    // Committed: the order and one run of the job.
    let mut tx = app.begin().await.expect("begin");
    sqlx::query("INSERT INTO orders VALUES (2)")
        .execute(&mut *tx)
        .await
        .expect("order 2");
    let committed: uuid::Uuid = sqlx::query_scalar(sqlx::AssertSqlSafe(enqueue.clone()))
        .bind("send-receipt")
        .bind(r#"{"order": 2}"#)
        .bind("order-2")
        .fetch_one(&mut *tx)
        .await
        .expect("enqueue order 2");
    tx.commit().await.expect("commit");

    // The same key again, in another committed transaction: the first execution, nothing new.
    let mut tx = app.begin().await.expect("begin");
    let again: uuid::Uuid = sqlx::query_scalar(sqlx::AssertSqlSafe(enqueue.clone()))
        .bind("send-receipt")
        .bind(r#"{"order": 2, "again": true}"#)
        .bind("order-2")
        .fetch_one(&mut *tx)
        .await
        .expect("enqueue order 2 again");
    tx.commit().await.expect("commit");
    assert_eq!(
        again, committed,
        "a repeated key returns the first execution"
    );
    assert_ne!(rolled_back, committed);

    let done = wait_until(&*backend.store, "send-receipt", "ran order 2", |all| {
        all.iter().any(|e| e.status == Status::Succeeded)
    })
    .await;
    assert_eq!(done.len(), 1, "one execution: {done:?}");
    assert_eq!(done[0].id.as_uuid(), committed);
    // Give a second run, if there were one, time to show.
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        runs(&file),
        vec![r#"{"order":2}"#.to_owned()],
        "the job ran once, for the order that committed"
    );
    assert_eq!(all_of(&*backend.store, "send-receipt").await.len(), 1);

    // Refusals name what is wrong and what to do, and leave the transaction to the caller.
    let unknown = sqlx::query(sqlx::AssertSqlSafe(enqueue.clone()))
        .bind("no-such-job")
        .bind("{}")
        .bind(None::<String>)
        .execute(&mut app)
        .await
        .expect_err("an unknown job is refused");
    let db = unknown.as_database_error().expect("a database error");
    assert_eq!(db.code().as_deref(), Some("P0002"), "{db}");
    assert!(db.message().contains("no-such-job"), "{db}");
    let bad_priority = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT \"{schema}\".enqueue('send-receipt', priority => 5000)"
    )))
    .execute(&mut app)
    .await
    .expect_err("a priority out of range is refused");
    let db = bad_priority.as_database_error().expect("a database error");
    assert_eq!(db.code().as_deref(), Some("22023"), "{db}");

    drop(server);
    backend.close().await;
}
