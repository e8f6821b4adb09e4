//! Fresh, isolated stores for tests and benchmarks: a temp-file SQLite database, or a schema of
//! its own in the PostgreSQL database named by `PANDA_TEST_DATABASE_URL`.

use std::sync::Arc;

use crate::{PgStore, SqliteStore, Store};

/// The environment variable naming the PostgreSQL database tests may create schemas in.
pub const DATABASE_URL_ENV: &str = "PANDA_TEST_DATABASE_URL";
/// When set to `1`, a backend that is not available fails the test instead of skipping it.
pub const REQUIRE_ALL_ENV: &str = "PANDA_REQUIRE_ALL_BACKENDS";

/// A store that lives as long as this value. A SQLite store's temp dir goes when it is dropped; a
/// PostgreSQL store's schema goes with [`TestStore::close`], and stays for a look after a case
/// that panicked before closing it.
#[derive(Debug)]
pub struct TestStore {
    /// The store, shareable across tasks.
    pub store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    pg: Option<Arc<PgStore>>,
    /// How to open the same database again: the SQLite file, or the PostgreSQL URL and schema.
    reopen: Reopen,
}

#[derive(Debug, Clone)]
enum Reopen {
    Sqlite(std::path::PathBuf),
    Postgres { url: String, schema: String },
}

impl TestStore {
    /// A second, independent store on the same database (its own connections), as another
    /// process or node would open it.
    ///
    /// # Panics
    ///
    /// When the database cannot be opened again.
    pub async fn reopen(&self) -> Arc<dyn Store> {
        match &self.reopen {
            Reopen::Sqlite(path) => Arc::new(
                SqliteStore::open(path)
                    .await
                    .unwrap_or_else(|err| panic!("reopen {}: {err}", path.display())),
            ),
            Reopen::Postgres { url, schema } => Arc::new(
                PgStore::connect_in_schema(url, schema, 8)
                    .await
                    .unwrap_or_else(|err| panic!("reopen schema {schema}: {err}")),
            ),
        }
    }

    /// Throws the store away: drops a PostgreSQL store's schema, with everything in it.
    ///
    /// # Panics
    ///
    /// When the schema cannot be dropped: a test database that fills with leftovers is a fault.
    pub async fn close(self) {
        if let Some(pg) = self.pg {
            pg.drop_schema()
                .await
                .unwrap_or_else(|err| panic!("drop the test schema: {err}"));
        }
    }
}

/// A fresh SQLite store in a temp dir.
pub async fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().expect("create a temp dir for the test database");
    let path = dir.path().join("panda.db");
    let store = SqliteStore::open(&path)
        .await
        .expect("open a fresh SQLite store");
    TestStore {
        store: Arc::new(store),
        _dir: Some(dir),
        pg: None,
        reopen: Reopen::Sqlite(path),
    }
}

/// A fresh PostgreSQL store in a schema of its own, or `None` (with the reason printed) when
/// `PANDA_TEST_DATABASE_URL` is not set.
///
/// # Panics
///
/// When the database is required (`PANDA_REQUIRE_ALL_BACKENDS=1`) but not configured, or when it
/// is configured but cannot be reached: a test that cannot run must not pass.
pub async fn postgres() -> Option<TestStore> {
    let Some(url) = std::env::var(DATABASE_URL_ENV)
        .ok()
        .filter(|u| !u.is_empty())
    else {
        if std::env::var(REQUIRE_ALL_ENV).as_deref() == Ok("1") {
            panic!(
                "{REQUIRE_ALL_ENV}=1 but {DATABASE_URL_ENV} is not set: PostgreSQL tests cannot run"
            );
        }
        eprintln!("skipped: {DATABASE_URL_ENV} is not set, so the PostgreSQL case does not run");
        return None;
    };
    let schema = format!("panda_test_{}", uuid::Uuid::now_v7().simple());
    let store = PgStore::connect_in_schema(&url, &schema, 8)
        .await
        .unwrap_or_else(|err| panic!("connect to {DATABASE_URL_ENV} in schema {schema}: {err}"));
    let pg = Arc::new(store);
    Some(TestStore {
        store: Arc::clone(&pg) as Arc<dyn Store>,
        _dir: None,
        pg: Some(pg),
        reopen: Reopen::Postgres { url, schema },
    })
}

/// Stamps each case once per backend, as `sqlite::case` and `postgres::case`, each with a fresh
/// store that is thrown away when the case returns: a case is `async fn case(test: &TestStore)`.
/// The PostgreSQL one skips without a database, or fails under `PANDA_REQUIRE_ALL_BACKENDS=1`.
///
/// ```text
/// panda_store::backends! { a_finish_frees_the_slot, a_rescue_runs_it_again }
/// ```
#[macro_export]
macro_rules! backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let test = $crate::testing::sqlite().await;
                    super::$case(&test).await;
                    test.close().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(test) = $crate::testing::postgres().await else { return };
                    super::$case(&test).await;
                    test.close().await;
                }
            )*
        }
    };
}
