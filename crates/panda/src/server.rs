//! `panda server`: opens the store, makes sure the admin token exists, and runs until told to
//! stop.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use clap::Args;
use panda_core::SystemClock;
use panda_engine::Scheduler;
use panda_store::{Store, StoreError, TokenScope};
use tokio_util::sync::CancellationToken;

use crate::store;

/// The token file the local CLI reads when no token is given.
const ADMIN_TOKEN_FILE: &str = "admin.token";
const ADMIN_TOKEN_NAME: &str = "admin";

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  panda server
  panda server --data-dir /var/lib/panda
  PANDA_DATABASE_URL=postgres://panda@db/panda panda server")]
pub(crate) struct ServerArgs {
    /// Where the SQLite database and the admin token live [default: ~/.local/share/panda]
    #[arg(long, env = "PANDA_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A postgres:// URL to keep state in PostgreSQL instead of SQLite
    #[arg(
        long,
        env = "PANDA_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
}

pub(crate) async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let stop = ShutdownSignal::install()?;
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => store::default_data_dir()?,
    };
    let store = store::open(args.database_url.as_deref(), &data_dir).await?;
    let token_path = data_dir.join(ADMIN_TOKEN_FILE);
    ensure_admin_token(store.as_ref(), &token_path).await?;
    match &args.database_url {
        Some(url) => tracing::info!(database = %store::redact(url), "store ready on PostgreSQL"),
        None => {
            tracing::info!(path = %data_dir.join("panda.db").display(), "store ready on SQLite")
        }
    }
    tracing::info!(path = %token_path.display(), "admin token");
    let shutdown = CancellationToken::new();
    let scheduler = Scheduler::new(Arc::clone(&store), Arc::new(SystemClock));
    let scheduler = tokio::spawn(scheduler.run(shutdown.clone()));
    tracing::info!("scheduler running");
    tracing::warn!(
        "the HTTP API and the workers are not built yet: cron slots are recorded and queued, \
         but nothing runs them"
    );
    stop.received().await;
    shutdown.cancel();
    scheduler.await.context("the scheduler task")?;
    tracing::info!("stopped");
    Ok(())
}

/// Creates the admin token on first start and writes it, readable by its owner only, where the
/// local CLI looks for it. A token file that the store no longer knows (a new database) is
/// replaced.
async fn ensure_admin_token(store: &dyn Store, path: &Path) -> anyhow::Result<()> {
    if let Ok(existing) = std::fs::read_to_string(path)
        && store
            .token_verify(existing.trim(), Utc::now())
            .await?
            .is_some()
    {
        return Ok(());
    }
    match store.token_revoke(ADMIN_TOKEN_NAME, Utc::now()).await {
        Ok(()) | Err(StoreError::NotFound { .. }) => {}
        Err(err) => return Err(err).context("replace the admin token"),
    }
    let (_, secret) = store
        .token_create(ADMIN_TOKEN_NAME, TokenScope::Admin, Utc::now())
        .await
        .context("create the admin token")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("create the directory {}", dir.display()))?;
    }
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("write the admin token to {}", path.display()))?;
    writeln!(file, "{secret}").with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

/// SIGTERM and SIGINT (Ctrl-C), listened for from the moment this is made: a signal that comes
/// while the server is still starting is not lost (nor does it kill the process unclean).
struct ShutdownSignal {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            terminate: signal(SignalKind::terminate()).context("listen for SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("listen for SIGINT")?,
        })
    }

    async fn received(mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}
