//! `panda apply -f FILE` and `panda export`: job definitions as a TOML file, kept in version
//! control and applied like `kubectl apply`. The file is a list of `[[job]]` tables in the
//! API's own shape, so `export` prints what `apply` reads.

use std::path::Path;

use anyhow::Context;
use panda_client::ClientError;
use panda_core::JobSpec;
use panda_core::api::SECRET_PLACEHOLDER;
use serde::{Deserialize, Serialize};

use crate::UserError;
use crate::cli::Connection;

/// The file: `[[job]]` tables.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobsFile {
    #[serde(default, rename = "job")]
    jobs: Vec<JobSpec>,
}

/// What `apply` did to one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Created,
    Updated,
    Unchanged,
}

pub(crate) async fn apply(file: &Path, connection: &Connection) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
    let parsed: JobsFile = toml::from_str(&text).map_err(|err| {
        let line = err
            .span()
            .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
        let at = line.map_or_else(String::new, |line| format!(" (line {line})"));
        match panda_core::UnknownField::from_serde_message(err.message()) {
            Some(unknown) => UserError::new(
                format!("{}{at}: {unknown}", file.display()),
                "`panda export` prints a file with every field spelt as apply reads it",
            ),
            None => UserError::new(
                format!("{} is not a jobs file: {}", file.display(), err.message()),
                "`panda export` prints one to start from",
            ),
        }
    })?;
    // Every definition is checked before anything is changed.
    let mut names = std::collections::BTreeSet::new();
    for spec in &parsed.jobs {
        spec.validate().map_err(|err| {
            UserError::plain(format!(
                "job {:?} in {}: {err}",
                spec.name.as_str(),
                file.display()
            ))
        })?;
        if !names.insert(spec.name.as_str()) {
            return Err(UserError::plain(format!(
                "job {:?} is defined twice in {}",
                spec.name.as_str(),
                file.display()
            ))
            .into());
        }
    }
    let client = connection.client()?;
    for spec in &parsed.jobs {
        let change = match client.job(spec.name.as_str()).await {
            Ok(current) => {
                let mut stored = current.spec;
                // What the API shows of a secret is the placeholder: a secret the file gives
                // in full counts as a change (its value cannot be compared), one given as the
                // placeholder keeps the stored value.
                let secrets_given = spec
                    .secret_env
                    .values()
                    .any(|value| value != SECRET_PLACEHOLDER);
                stored.secret_env.clone_from(&spec.secret_env);
                if stored == *spec && !secrets_given {
                    Change::Unchanged
                } else {
                    client.job_update(spec).await.map_err(crate::cli::user)?;
                    Change::Updated
                }
            }
            Err(err) if err.code() == Some("not_found") => {
                client.job_create(spec).await.map_err(crate::cli::user)?;
                Change::Created
            }
            Err(err) => return Err(crate::cli::user(err)),
        };
        let noun = if spec.schedule.is_some() {
            "cronjob"
        } else {
            "job"
        };
        let word = match change {
            Change::Created => "created",
            Change::Updated => "updated",
            Change::Unchanged => "unchanged",
        };
        println!("{noun}/{} {word}", spec.name);
    }
    Ok(())
}

pub(crate) async fn export(connection: &Connection) -> anyhow::Result<()> {
    let client = connection.client()?;
    let jobs = client
        .jobs("all")
        .await
        .map_err(|err: ClientError| crate::cli::user(err))?;
    let file = JobsFile {
        jobs: jobs.into_iter().map(|view| view.job.spec).collect(),
    };
    print!("{}", toml::to_string(&file)?);
    Ok(())
}
