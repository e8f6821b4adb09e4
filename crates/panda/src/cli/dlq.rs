//! `panda dlq …`.

use chrono::Utc;
use clap::Subcommand;
use panda_core::ExecutionId;

use super::connection::{Connection, user};
use super::executions::show_execution;
use crate::output::{self, Format};

/// `panda dlq …`: the dead-letter queue.
#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// List dead executions not yet retried or discarded, newest first
    List {
        /// Only this job's
        #[arg(long)]
        job: Option<String>,
    },
    /// Run a dead execution again
    Retry {
        /// The execution's id
        id: ExecutionId,
    },
    /// Take a dead execution out of the queue without running it (its history stays)
    Discard {
        /// The execution's id
        id: ExecutionId,
    },
}

pub(crate) async fn dlq(
    command: DlqCommand,
    connection: &Connection,
) -> anyhow::Result<std::process::ExitCode> {
    let client = connection.client()?;
    match command {
        DlqCommand::List { job } => {
            let page = client.dead_letters(job.as_deref()).await.map_err(user)?;
            match connection.output {
                Format::Json | Format::Yaml => {
                    output::structured(&page.executions, connection.output)?
                }
                Format::Table if page.executions.is_empty() => {
                    eprintln!("the dead-letter queue is empty");
                }
                Format::Table => println!(
                    "{}",
                    output::render(&output::executions_table(&page.executions, Utc::now()))
                ),
            }
        }
        DlqCommand::Retry { id } => {
            let retry = client.dlq_retry(id).await.map_err(user)?;
            show_execution(&retry, connection.output)?;
        }
        DlqCommand::Discard { id } => {
            client.dlq_discard(id).await.map_err(user)?;
            match connection.output {
                Format::Json | Format::Yaml => output::structured(
                    &serde_json::json!({"execution": id, "discarded": true}),
                    connection.output,
                )?,
                Format::Table => println!("execution {id} discarded from the dead-letter queue"),
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
