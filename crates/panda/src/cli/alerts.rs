//! `panda alert …`.

use chrono::Utc;
use clap::Subcommand;

use super::connection::{Connection, user};
use crate::output::{self, Format};

/// `panda alert …`: alerts and their deliveries.
#[derive(Debug, Subcommand)]
pub(crate) enum AlertCommand {
    /// List alerts, newest first, with where each went and how that went
    #[command(after_help = "Examples:
  panda alert list
  panda alert list --job generate-reports
  panda alert list -o json")]
    List {
        /// Only this job's
        #[arg(long)]
        job: Option<String>,
        /// How many
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
}

pub(crate) async fn alert(
    command: AlertCommand,
    connection: &Connection,
) -> anyhow::Result<std::process::ExitCode> {
    let client = connection.client()?;
    let AlertCommand::List { job, limit } = command;
    let list = client.alerts(job.as_deref(), limit).await.map_err(user)?;
    match connection.output {
        Format::Json | Format::Yaml => output::structured(&list.alerts, connection.output)?,
        Format::Table if list.alerts.is_empty() => eprintln!("no alerts"),
        Format::Table => println!(
            "{}",
            output::render(&output::alerts_table(&list.alerts, Utc::now()))
        ),
    }
    Ok(std::process::ExitCode::SUCCESS)
}
