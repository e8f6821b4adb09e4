//! Where a test's state lives: SQLite in a temp dir, or a schema of its own in the PostgreSQL
//! database `PANDA_TEST_DATABASE_URL` names (skipped without it unless
//! `PANDA_REQUIRE_ALL_BACKENDS=1`), and how a node is pointed at it.

use std::path::PathBuf;
use std::sync::Arc;

use panda_store::testing::{DATABASE_URL_ENV, REQUIRE_ALL_ENV};
use panda_store::{PgStore, SqliteStore, Store};

use super::{Server, Start};

/// A test's store, and the `--database-url` / data dirs that point nodes at it.
pub struct Backend {
    pub store: Arc<dyn Store>,
    /// `--database-url`, for PostgreSQL.
    pub url: Option<String>,
    pub pg: Option<Arc<PgStore>>,
    pub dir: tempfile::TempDir,
}

impl Backend {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("panda.db"))
            .await
            .expect("open SQLite");
        Self {
            store: Arc::new(store),
            url: None,
            pg: None,
            dir,
        }
    }

    /// `None` (and a printed reason) when no PostgreSQL is configured and none is required.
    pub async fn postgres(prefix: &str) -> Option<Self> {
        let Some(url) = std::env::var(DATABASE_URL_ENV)
            .ok()
            .filter(|u| !u.is_empty())
        else {
            assert!(
                std::env::var(REQUIRE_ALL_ENV).as_deref() != Ok("1"),
                "{REQUIRE_ALL_ENV}=1 but {DATABASE_URL_ENV} is not set"
            );
            eprintln!("skipped: {DATABASE_URL_ENV} is not set");
            return None;
        };
        let schema = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
        let pg = Arc::new(
            PgStore::connect_in_schema(&url, &schema, 4)
                .await
                .expect("connect to PostgreSQL"),
        );
        let separator = if url.contains('?') { '&' } else { '?' };
        let server_url = format!("{url}{separator}options=-c%20search_path%3D{schema}");
        Some(Self {
            store: Arc::clone(&pg) as Arc<dyn Store>,
            url: Some(server_url),
            pg: Some(pg),
            dir: tempfile::tempdir().expect("temp dir"),
        })
    }

    /// A data dir of its own for each node (the admin token file), the shared database.
    pub fn node_dir(&self, node: &str) -> PathBuf {
        match self.url {
            Some(_) => self.dir.path().join(node),
            None => self.dir.path().to_path_buf(),
        }
    }

    /// `start` pointed at this backend, as node `node`, running local processes.
    pub fn node(&self, start: Start, node: &str, extra: &[&str]) -> Server {
        start
            .data_dir(self.node_dir(node))
            .database_url(self.url.as_deref())
            .args(["--runtime", "process", "--worker-id", node])
            .args(extra)
            .start()
    }

    pub async fn close(self) {
        if let Some(pg) = self.pg {
            pg.drop_schema().await.expect("drop the test schema");
        }
    }
}
