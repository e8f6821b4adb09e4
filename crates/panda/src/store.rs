//! Opening the store the configuration names: PostgreSQL for a `postgres://` URL, otherwise
//! SQLite in the data directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
pub(crate) use panda_store::redact_url as redact;
use panda_store::{PgStore, SqliteStore, Store};

use crate::UserError;

/// Connections each PostgreSQL-backed process opens.
const PG_POOL_SIZE: u32 = 16;

/// The data directory when none is given: `$XDG_DATA_HOME/panda` (`~/.local/share/panda`).
pub(crate) fn default_data_dir() -> anyhow::Result<PathBuf> {
    use etcetera::BaseStrategy;
    let base = etcetera::choose_base_strategy().map_err(|err| {
        UserError::new(
            format!("cannot find a home directory for Panda's data: {err}"),
            "pass --data-dir DIR or set PANDA_DATA_DIR",
        )
    })?;
    Ok(base.data_dir().join("panda"))
}

/// Refuses a database URL no store can open, before anything is opened.
pub(crate) fn check_url(database_url: Option<&str>) -> anyhow::Result<()> {
    match database_url {
        Some(url) if !url.starts_with("postgres://") && !url.starts_with("postgresql://") => {
            Err(UserError::new(
                format!("unsupported database URL {:?}", redact(url)),
                "use a postgres:// URL, or leave --database-url out to use SQLite in the data dir",
            )
            .into())
        }
        _ => Ok(()),
    }
}

/// Opens the store: PostgreSQL when `database_url` is given, SQLite at `DATA_DIR/panda.db`
/// otherwise.
pub(crate) async fn open(
    database_url: Option<&str>,
    data_dir: &Path,
) -> anyhow::Result<Arc<dyn Store>> {
    check_url(database_url)?;
    match database_url {
        Some(url) => {
            let store = PgStore::connect(url, PG_POOL_SIZE)
                .await
                .with_context(|| format!("connect to PostgreSQL at {}", redact(url)))?;
            Ok(Arc::new(store))
        }
        None => {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("create the data directory {}", data_dir.display()))?;
            let path = data_dir.join("panda.db");
            let store = SqliteStore::open(&path)
                .await
                .with_context(|| format!("open the SQLite store at {}", path.display()))?;
            Ok(Arc::new(store))
        }
    }
}
