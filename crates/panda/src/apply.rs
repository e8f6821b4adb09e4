//! `panda apply -f FILE` and `panda export`: job and service definitions as a TOML file, kept
//! in version control and applied like `kubectl apply`. The file is a list of `[[job]]` and
//! `[[service]]` tables in the API's own shape, so `export` prints what `apply` reads. A
//! `[[service]]` table is a job definition whose `service` part (`[service.service]`) and
//! `retry` may be left out: they take the defaults `panda service create` gives.

use std::path::Path;

use anyhow::Context;
use panda_client::ClientError;
use panda_core::JobSpec;
use panda_core::api::SECRET_PLACEHOLDER;
use serde::{Deserialize, Serialize};

use crate::UserError;
use crate::cli::Connection;

/// The file: `[[job]]` tables, then `[[service]]` tables.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobsFile {
    #[serde(default, rename = "job", skip_serializing_if = "Vec::is_empty")]
    jobs: Vec<JobSpec>,
    #[serde(default, rename = "service", skip_serializing_if = "Vec::is_empty")]
    services: Vec<toml::Table>,
}

/// A `[[service]]` table as a job definition, its defaults filled in.
fn service_of(mut table: toml::Table, file: &Path) -> anyhow::Result<JobSpec> {
    let name = table
        .get("name")
        .and_then(toml::Value::as_str)
        .unwrap_or("?")
        .to_owned();
    if !table.contains_key("retry") {
        let retry = toml::Table::try_from(panda_core::RetryPolicy::cronjob_default())?;
        table.insert("retry".into(), toml::Value::Table(retry));
    }
    table
        .entry("service")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let spec: JobSpec = toml::Value::Table(table)
        .try_into()
        .map_err(|err: toml::de::Error| {
            let message = err.message().to_owned();
            match panda_core::UnknownField::from_serde_message(&message) {
                Some(unknown) => UserError::new(
                    format!("service {name:?} in {}: {unknown}", file.display()),
                    "`panda export` prints a file with every field spelt as apply reads it",
                ),
                None => UserError::new(
                    format!("service {name:?} in {}: {message}", file.display()),
                    "`panda export` prints one to start from",
                ),
            }
        })?;
    if spec.schedule.is_some() {
        return Err(UserError::new(
            format!(
                "service {name:?} in {}: a service has no schedule; it runs until stopped",
                file.display()
            ),
            "a job on a schedule is a [[job]] table",
        )
        .into());
    }
    Ok(spec)
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
    let mut specs = parsed.jobs;
    for table in parsed.services {
        specs.push(service_of(table, file)?);
    }
    // Every definition is checked before anything is changed.
    let mut names = std::collections::BTreeSet::new();
    for spec in &specs {
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
    for spec in &specs {
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
                } else if spec.is_service() {
                    client
                        .service_update(spec)
                        .await
                        .map_err(crate::cli::user)?;
                    Change::Updated
                } else {
                    client.job_update(spec).await.map_err(crate::cli::user)?;
                    Change::Updated
                }
            }
            Err(err) if err.code() == Some("not_found") => {
                if spec.is_service() {
                    client
                        .service_create(spec)
                        .await
                        .map_err(crate::cli::user)?;
                } else {
                    client.job_create(spec).await.map_err(crate::cli::user)?;
                }
                Change::Created
            }
            Err(err) => return Err(crate::cli::user(err)),
        };
        let noun = if spec.is_service() {
            "service"
        } else if spec.schedule.is_some() {
            "cronjob"
        } else {
            "job"
        };
        let word = match change {
            Change::Created => "created",
            Change::Updated => "updated",
            Change::Unchanged => "unchanged",
        };
        crate::output::emit(&format!("{noun}/{} {word}", spec.name));
    }
    Ok(())
}

pub(crate) async fn export(connection: &Connection) -> anyhow::Result<()> {
    let client = connection.client()?;
    let jobs = client
        .jobs("all")
        .await
        .map_err(|err: ClientError| crate::cli::user(err))?;
    let (services, jobs): (Vec<JobSpec>, Vec<JobSpec>) = jobs
        .into_iter()
        .map(|view| view.job.spec)
        .partition(JobSpec::is_service);
    let file = JobsFile {
        jobs,
        services: services
            .into_iter()
            .map(toml::Table::try_from)
            .collect::<Result<_, _>>()?,
    };
    crate::output::emit(toml::to_string(&file)?.trim_end());
    Ok(())
}
