//! `panda queue …`.

use chrono::Utc;
use clap::Subcommand;
use panda_core::api::QueueView;

use super::connection::{Connection, user};
use crate::output::{self, Format};

/// `panda queue …`: the queues executions wait in.
#[derive(Debug, Subcommand)]
pub(crate) enum QueueCommand {
    /// List every queue that holds work or is paused, with its depth
    List,
    /// Pause a queue on every node: it keeps accepting work and starts none
    #[command(
        after_help = "What is running runs on. Cronjobs on a paused queue miss their \
slots: with --catch-up none each is recorded as skipped; otherwise a slot waits within its \
starting deadline and runs when the queue resumes in time."
    )]
    Pause {
        /// The queue's name
        name: String,
    },
    /// Resume a paused queue: its due work starts at once
    Resume {
        /// The queue's name
        name: String,
    },
}

pub(crate) async fn queue(
    command: QueueCommand,
    connection: &Connection,
) -> anyhow::Result<std::process::ExitCode> {
    let client = connection.client()?;
    match command {
        QueueCommand::List => {
            let list = client.queues().await.map_err(user)?;
            match connection.output {
                Format::Json | Format::Yaml => output::structured(&list.queues, connection.output)?,
                Format::Table if list.queues.is_empty() => {
                    eprintln!("no queue holds work and none is paused");
                }
                Format::Table => println!("{}", output::render(&table(&list.queues))),
            }
        }
        QueueCommand::Pause { name } => {
            let queue = client.queue_pause(&name, true).await.map_err(user)?;
            show(
                &queue,
                connection.output,
                "paused: it accepts work and starts none",
            )?;
        }
        QueueCommand::Resume { name } => {
            let queue = client.queue_pause(&name, false).await.map_err(user)?;
            show(&queue, connection.output, "running")?;
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn show(queue: &QueueView, format: Format, state: &str) -> anyhow::Result<()> {
    match format {
        Format::Json | Format::Yaml => output::structured(queue, format)?,
        Format::Table => println!(
            "queue {} {state} ({} due, {} waiting, {} running)",
            queue.name, queue.due, queue.waiting, queue.running
        ),
    }
    Ok(())
}

fn table(queues: &[QueueView]) -> comfy_table::Table {
    let now = Utc::now();
    let mut table = output::table(&["queue", "state", "due", "waiting", "running", "oldest due"]);
    for q in queues {
        let state = match q.paused_at {
            Some(at) => format!("paused {}", panda_core::human::relative(at, now)),
            None => "running".to_owned(),
        };
        table.add_row(vec![
            q.name.clone(),
            state,
            q.due.to_string(),
            q.waiting.to_string(),
            q.running.to_string(),
            q.oldest_due_at
                .map_or_else(|| "-".to_owned(), |at| panda_core::human::relative(at, now)),
        ]);
    }
    table
}
