//! `panda execution …`.

use chrono::Utc;
use clap::Subcommand;
use panda_core::{Execution, ExecutionId};

use super::connection::{Connection, user};
use crate::output::{self, Format};

/// `panda execution …`: one execution, by id.
#[derive(Debug, Subcommand)]
pub(crate) enum ExecutionCommand {
    /// Show an execution
    Get {
        /// The execution's id
        id: ExecutionId,
    },
    /// Cancel an execution: a queued one at once, a running one is stopped by its worker
    Cancel {
        /// The execution's id
        id: ExecutionId,
    },
    /// Run a dead execution again (it leaves the dead-letter queue)
    Retry {
        /// The execution's id
        id: ExecutionId,
    },
}

pub(crate) async fn execution(
    command: ExecutionCommand,
    connection: &Connection,
) -> anyhow::Result<std::process::ExitCode> {
    let client = connection.client()?;
    let execution = match command {
        ExecutionCommand::Get { id } => client.execution(id).await,
        ExecutionCommand::Cancel { id } => client.cancel(id).await,
        ExecutionCommand::Retry { id } => client.dlq_retry(id).await,
    }
    .map_err(user)?;
    show_execution(&execution, connection.output)?;
    Ok(std::process::ExitCode::SUCCESS)
}

pub(super) fn show_execution(execution: &Execution, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json | Format::Yaml => output::structured(execution, format),
        Format::Table => {
            println!(
                "{}",
                output::render(&output::executions_table(
                    std::slice::from_ref(execution),
                    Utc::now()
                ))
            );
            if let Some(upstream) = execution.upstream_id() {
                let job = execution
                    .env
                    .get(panda_core::UPSTREAM_JOB_ENV)
                    .map_or_else(String::new, |job| format!(" ({job})"));
                println!("Upstream: {upstream}{job}");
            }
            Ok(())
        }
    }
}
