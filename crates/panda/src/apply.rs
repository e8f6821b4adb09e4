//! `panda apply -f FILE` and `panda export`: job and service definitions as a TOML file, kept
//! in version control and applied like `kubectl apply`. The file is a list of `[[job]]` and
//! `[[service]]` and `[[monitor]]` tables in the API's shape, written for people: a duration is
//! written as the CLI's flags take it (`timeout = "1h"`, read as the API's
//! `timeout_ms = 3600000`, which is read too), and whatever is left out takes the default the
//! CLI and the API give (a `[[service]]` table's `service` part included; a `[[monitor]]`
//! table's runtime is `ping` and its `grace = "30m"` is its monitor part). `export` prints what
//! `apply` reads, leaving out every field that holds its default and every empty table, and
//! never a monitor's ping URL, which `apply` prints once when it creates the monitor.

use std::path::Path;

use anyhow::Context;
use panda_client::ClientError;
use panda_core::JobSpec;
use panda_core::api::SECRET_PLACEHOLDER;
use serde::{Deserialize, Serialize};

use crate::UserError;
use crate::cli::Connection;

/// The file: `[[job]]` tables, then `[[service]]` tables, then `[[monitor]]` tables.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobsFile {
    #[serde(default, rename = "job", skip_serializing_if = "Vec::is_empty")]
    jobs: Vec<toml::Table>,
    #[serde(default, rename = "service", skip_serializing_if = "Vec::is_empty")]
    services: Vec<toml::Table>,
    #[serde(default, rename = "monitor", skip_serializing_if = "Vec::is_empty")]
    monitors: Vec<toml::Table>,
}

/// Every duration field of a definition, by the API's name (`timeout_ms`); the file writes it
/// without the `_ms`, as a duration (`timeout = "1h"`).
const DURATIONS: &[&str] = &[
    "timeout_ms",
    "max_age_ms",
    "backoff_base_ms",
    "backoff_cap_ms",
    "starting_deadline_ms",
    "jitter_ms",
    "late_after_ms",
    "running_longer_than_ms",
    "restart_delay_ms",
    "restart_delay_max_ms",
    "stop_timeout_ms",
    "interval_ms",
    "start_period_ms",
    "healthy_after_ms",
    "healthy_deadline_ms",
    "min_healthy_ms",
    "grace_ms",
    "per_ms",
];

/// Rewrites `timeout = "1h"` as `timeout_ms = 3600000`, in every table of `table`.
fn durations_read(table: &mut toml::Table, at: &str) -> anyhow::Result<()> {
    let keys: Vec<String> = table.keys().cloned().collect();
    for key in keys {
        let api = format!("{key}_ms");
        match table.get_mut(&key) {
            Some(toml::Value::Table(inner)) => durations_read(inner, &format!("{at}{key}."))?,
            Some(toml::Value::Array(items)) => {
                for item in items {
                    if let toml::Value::Table(inner) = item {
                        durations_read(inner, &format!("{at}{key}."))?;
                    }
                }
            }
            Some(toml::Value::String(text)) if DURATIONS.contains(&api.as_str()) => {
                let duration = humantime::parse_duration(text).map_err(|err| {
                    UserError::new(
                        format!("{at}{key} = {text:?} is not a duration: {err}"),
                        "write it as the flags do: \"90s\", \"10m\", \"1h 30m\", \"7d\"",
                    )
                })?;
                if table.contains_key(&api) {
                    return Err(UserError::plain(format!(
                        "{at}{key} and {at}{api} are the same setting; give one"
                    ))
                    .into());
                }
                let ms = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
                table.remove(&key);
                table.insert(api, toml::Value::Integer(ms));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Rewrites `timeout_ms = 3600000` as `timeout = "1h"`, in every table of `table`.
fn durations_written(table: &mut toml::Table) {
    let keys: Vec<String> = table.keys().cloned().collect();
    for key in keys {
        match table.get_mut(&key) {
            Some(toml::Value::Table(inner)) => durations_written(inner),
            Some(toml::Value::Array(items)) => {
                for item in items {
                    if let toml::Value::Table(inner) = item {
                        durations_written(inner);
                    }
                }
            }
            Some(toml::Value::Integer(ms)) if DURATIONS.contains(&key.as_str()) => {
                let duration = std::time::Duration::from_millis(u64::try_from(*ms).unwrap_or(0));
                let short = key.trim_end_matches("_ms").to_owned();
                table.remove(&key);
                table.insert(
                    short,
                    toml::Value::String(panda_core::human::exact(duration)),
                );
            }
            _ => {}
        }
    }
}

/// Leaves out of `table` what equals `defaults`, then every table left empty; `keep` names
/// what stays whatever it holds.
fn without_defaults(table: &mut toml::Table, defaults: &toml::Table, keep: &[&str]) {
    table.retain(|key, value| {
        if keep.contains(&key) {
            return true;
        }
        match (value, defaults.get(key)) {
            (toml::Value::Table(inner), Some(toml::Value::Table(default))) => {
                without_defaults(inner, default, keep);
                !inner.is_empty()
            }
            (toml::Value::Table(inner), None) => !inner.is_empty(),
            (toml::Value::Array(items), None) => !items.is_empty(),
            (value, Some(default)) => value != default,
            (_, None) => true,
        }
    });
}

/// A definition as the file writes it: durations as the flags take them, defaults left out.
fn table_of(spec: &JobSpec) -> anyhow::Result<toml::Table> {
    let mut table = toml::Table::try_from(spec)?;
    // The same kind of job with nothing but what is required: what every default is.
    let mut required = toml::Table::new();
    for key in ["name", "runtime"] {
        if let Some(value) = table.get(key) {
            required.insert(key.into(), value.clone());
        }
    }
    if let Some(schedule) = &spec.schedule {
        let mut only_cron = toml::Table::new();
        only_cron.insert("cron".into(), toml::Value::String(schedule.cron.clone()));
        required.insert("schedule".into(), toml::Value::Table(only_cron));
    }
    if spec.is_service() {
        required.insert("service".into(), toml::Value::Table(toml::Table::new()));
    }
    if let Some(monitor) = table.get("monitor") {
        required.insert("monitor".into(), monitor.clone());
    }
    let defaults: JobSpec = toml::Value::Table(required).try_into()?;
    let defaults = toml::Table::try_from(&defaults)?;
    without_defaults(
        &mut table,
        &defaults,
        &["name", "runtime", "cron", "monitor"],
    );
    // A [[monitor]] table: the runtime is implied, the grace is written at the top.
    if let Some(toml::Value::Table(monitor)) = table.remove("monitor") {
        table.remove("runtime");
        table.extend(monitor);
    }
    durations_written(&mut table);
    Ok(table)
}

/// How a file writes a rate limit.
const RATE_FORMS: &str = "write rate_limit = \"100/1m\", or rate_limit = { starts = 100, per = \"1m\", \
                          key = \"payload.customer_id\" } to count it per key";

/// Rewrites `rate_limit = "100/1m"` as the table the API reads (`{ starts, per_ms }`).
fn rate_limit_read(table: &mut toml::Table) -> Result<(), String> {
    let Some(toml::Value::String(text)) = table.get("rate_limit") else {
        return Ok(());
    };
    let limit: panda_core::RateLimit = text.parse()?;
    let mut rate = toml::Table::new();
    rate.insert("starts".into(), toml::Value::Integer(limit.starts.into()));
    rate.insert(
        "per_ms".into(),
        toml::Value::Integer(i64::try_from(limit.per.as_millis()).unwrap_or(i64::MAX)),
    );
    table.insert("rate_limit".into(), toml::Value::Table(rate));
    Ok(())
}

/// A `[[job]]` or `[[service]]` table (`noun`) as a definition.
fn spec_of(mut table: toml::Table, noun: &str, file: &Path) -> anyhow::Result<JobSpec> {
    let name = table
        .get("name")
        .and_then(toml::Value::as_str)
        .unwrap_or("?")
        .to_owned();
    let at = format!("{noun} {name:?} in {}: ", file.display());
    rate_limit_read(&mut table).map_err(|err| UserError::new(format!("{at}{err}"), RATE_FORMS))?;
    durations_read(&mut table, "").map_err(|err| UserError::plain(format!("{at}{err:#}")))?;
    if noun == "service" {
        table
            .entry("service")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
    if noun == "monitor" {
        let Some(grace) = table.remove("grace_ms") else {
            return Err(UserError::new(
                format!("{at}a monitor needs a grace"),
                "as in grace = \"30m\": how long after each slot its ping may come",
            )
            .into());
        };
        let mut monitor = toml::Table::new();
        monitor.insert("grace_ms".into(), grace);
        table.insert("monitor".into(), toml::Value::Table(monitor));
        table.entry("runtime").or_insert_with(|| {
            let mut runtime = toml::Table::new();
            runtime.insert("kind".into(), toml::Value::String("ping".into()));
            toml::Value::Table(runtime)
        });
    }
    let spec: JobSpec = toml::Value::Table(table)
        .try_into()
        .map_err(|err: toml::de::Error| {
            let message = err.message().to_owned();
            match panda_core::UnknownField::from_serde_message(&message) {
                Some(unknown) => UserError::new(
                    format!("{at}{unknown}"),
                    "`panda export` prints a file with every field spelt as apply reads it",
                ),
                None => UserError::new(
                    format!("{at}{message}"),
                    "`panda export` prints one to start from",
                ),
            }
        })?;
    if noun == "service" && spec.schedule.is_some() {
        return Err(UserError::new(
            format!("{at}a service has no schedule; it runs until stopped"),
            "a job on a schedule is a [[job]] table",
        )
        .into());
    }
    if noun != "monitor" && spec.is_monitor() {
        return Err(UserError::new(
            format!("{at}a [[{noun}]] table has no monitor part"),
            "a cron that runs elsewhere and pings Panda is a [[monitor]] table",
        )
        .into());
    }
    if noun == "job" && spec.is_service() {
        return Err(UserError::new(
            format!("{at}a [[job]] table has no service part"),
            "a long-running service is a [[service]] table",
        )
        .into());
    }
    Ok(spec)
}

/// The definitions in an order that applies each after the jobs of the file it follows (its
/// `after`), otherwise as the file has them: a job is created after what it follows. A chain
/// of the file that leads back to where it starts is refused before anything changes.
fn in_chain_order(specs: Vec<JobSpec>, file: &Path) -> anyhow::Result<Vec<JobSpec>> {
    let graph: std::collections::BTreeMap<String, Vec<String>> = specs
        .iter()
        .map(|spec| {
            (
                spec.name.to_string(),
                spec.after.iter().map(|u| u.job.to_string()).collect(),
            )
        })
        .collect();
    for spec in &specs {
        if let Some(cycle) = panda_core::find_cycle(&graph, spec.name.as_str()) {
            let err = panda_core::cycle_error(&cycle);
            return Err(UserError::new(
                format!("{}: {err}", file.display()),
                err.hint().unwrap_or_default(),
            )
            .into());
        }
    }
    let mut placed = std::collections::BTreeSet::new();
    let mut left = specs;
    let mut ordered = Vec::with_capacity(left.len());
    while !left.is_empty() {
        // Without a cycle, some definition always waits for nothing left.
        let ready = left
            .iter()
            .position(|spec| {
                spec.after
                    .iter()
                    .all(|u| placed.contains(u.job.as_str()) || !graph.contains_key(u.job.as_str()))
            })
            .unwrap_or(0);
        let spec = left.remove(ready);
        placed.insert(spec.name.to_string());
        ordered.push(spec);
    }
    Ok(ordered)
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
    let mut specs = Vec::new();
    for table in parsed.jobs {
        specs.push(spec_of(table, "job", file)?);
    }
    for table in parsed.services {
        specs.push(spec_of(table, "service", file)?);
    }
    for table in parsed.monitors {
        specs.push(spec_of(table, "monitor", file)?);
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
    let specs = in_chain_order(specs, file)?;
    let client = connection.client()?;
    for spec in &specs {
        let mut new_url = None;
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
                    let created = client
                        .job_create_full(spec)
                        .await
                        .map_err(crate::cli::user)?;
                    new_url = created.ping.map(|ping| {
                        format!("{}{}", connection.url().trim_end_matches('/'), ping.path)
                    });
                }
                Change::Created
            }
            Err(err) => return Err(crate::cli::user(err)),
        };
        let noun = if spec.is_service() {
            "service"
        } else if spec.is_monitor() {
            "monitor"
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
        match new_url {
            // The one time a monitor's URL is shown.
            Some(url) => crate::output::emit(&format!(
                "{noun}/{} {word}: ping URL {url} (a credential, shown only now)",
                spec.name
            )),
            None => crate::output::emit(&format!("{noun}/{} {word}", spec.name)),
        }
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
    let (monitors, jobs): (Vec<JobSpec>, Vec<JobSpec>) =
        jobs.into_iter().partition(JobSpec::is_monitor);
    let file = JobsFile {
        jobs: jobs.iter().map(table_of).collect::<Result<_, _>>()?,
        services: services.iter().map(table_of).collect::<Result<_, _>>()?,
        monitors: monitors.iter().map(table_of).collect::<Result<_, _>>()?,
    };
    crate::output::emit(toml::to_string(&file)?.trim_end());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `…_ms` property of the job definition's schema, and of the schemas it refers to.
    fn duration_fields() -> std::collections::BTreeSet<String> {
        let doc = serde_json::to_value(panda_api::openapi_document()).expect("the document");
        let schemas = &doc["components"]["schemas"];
        let mut seen = std::collections::BTreeSet::new();
        let mut todo = vec!["JobSpec".to_owned()];
        let mut fields = std::collections::BTreeSet::new();
        while let Some(name) = todo.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            let mut stack = vec![schemas[&name].clone()];
            while let Some(value) = stack.pop() {
                match value {
                    serde_json::Value::Object(map) => {
                        if let Some(serde_json::Value::String(target)) = map.get("$ref") {
                            todo.push(target.rsplit('/').next().unwrap_or_default().to_owned());
                        }
                        if let Some(serde_json::Value::Object(properties)) = map.get("properties") {
                            fields
                                .extend(properties.keys().filter(|k| k.ends_with("_ms")).cloned());
                        }
                        stack.extend(map.into_iter().map(|(_, v)| v));
                    }
                    serde_json::Value::Array(items) => stack.extend(items),
                    _ => {}
                }
            }
        }
        fields
    }

    #[test]
    fn every_duration_of_a_definition_is_written_as_the_flags_write_it() {
        let fields = duration_fields();
        assert!(fields.contains("timeout_ms"), "{fields:?}");
        let listed: std::collections::BTreeSet<String> =
            DURATIONS.iter().map(|d| (*d).to_owned()).collect();
        assert_eq!(fields, listed, "DURATIONS must name every duration field");
    }

    #[test]
    fn durations_read_back_as_written_and_defaults_are_left_out() {
        let mut spec: JobSpec = serde_json::from_value(serde_json::json!({
            "name": "generate-reports",
            "runtime": {"kind": "process", "argv": ["true"]},
            "schedule": {"cron": "0 5 * * *"},
            "timeout_ms": 5_400_000,
            "retry": {"backoff_base_ms": 1500},
        }))
        .expect("a definition");
        spec.labels.insert("team".into(), "data".into());
        let table = table_of(&spec).expect("a table");
        let text = toml::to_string(&table).expect("toml");
        assert!(text.contains("timeout = \"1h 30m\""), "{text}");
        assert!(text.contains("backoff_base = \"1s 500ms\""), "{text}");
        for default in [
            "queue",
            "priority",
            "concurrency",
            "max_attempts",
            "timezone",
            "env",
        ] {
            assert!(
                !text.contains(default),
                "{default} holds its default: {text}"
            );
        }
        let back = spec_of(table, "job", Path::new("panda.toml")).expect("reads back");
        assert_eq!(back, spec);
    }

    #[test]
    fn a_rate_limit_is_written_with_its_window_as_a_duration_and_reads_back() {
        let mut spec: JobSpec = serde_json::from_value(serde_json::json!({
            "name": "send-mail",
            "runtime": {"kind": "process", "argv": ["true"]},
            "rate_limit": {"starts": 100, "per_ms": 60_000, "key": "payload.customer_id"},
        }))
        .expect("a definition");
        let table = table_of(&spec).expect("a table");
        let text = toml::to_string(&table).expect("toml");
        assert!(text.contains("per = \"1m\""), "{text}");
        assert!(text.contains("starts = 100"), "{text}");
        let back = spec_of(table, "job", Path::new("panda.toml")).expect("reads back");
        assert_eq!(back, spec);

        // The short form, as the flag takes it, for a limit of the job as a whole.
        let short: toml::Table = toml::from_str(
            "name = \"send-mail\"\nruntime = { kind = \"process\", argv = [\"true\"] }\n\
             rate_limit = \"100/1m\"\n",
        )
        .expect("toml");
        spec.rate_limit = Some(panda_core::RateLimit::new(
            100,
            std::time::Duration::from_secs(60),
        ));
        assert_eq!(
            spec_of(short, "job", Path::new("panda.toml")).expect("reads"),
            spec
        );
        let zero: toml::Table = toml::from_str(
            "name = \"send-mail\"\nruntime = { kind = \"process\", argv = [\"true\"] }\n\
             rate_limit = \"0/1m\"\n",
        )
        .expect("toml");
        let err = spec_of(zero, "job", Path::new("panda.toml"))
            .expect_err("zero starts")
            .to_string();
        assert!(err.contains("\"0/1m\""), "{err}");
    }

    #[test]
    fn a_monitor_is_written_as_a_monitor_table_and_reads_back() {
        let mut spec = JobSpec::monitor(
            panda_core::JobName::new("nightly-backup").expect("a name"),
            panda_core::Schedule::new("0 3 * * *"),
            std::time::Duration::from_secs(1800),
        );
        spec.alerts.after_failures = Some(2);
        let table = table_of(&spec).expect("a table");
        let text = toml::to_string(&table).expect("toml");
        assert!(text.contains("grace = \"30m\""), "{text}");
        assert!(!text.contains("runtime"), "the runtime is implied: {text}");
        assert!(!text.contains("ping"), "no URL, no runtime word: {text}");
        let back = spec_of(table, "monitor", Path::new("panda.toml")).expect("reads back");
        assert_eq!(back, spec);
        let api_shape = toml::Table::try_from(&spec).expect("the API's shape");
        let err = spec_of(api_shape, "job", Path::new("panda.toml")).expect_err("not a [[job]]");
        assert!(format!("{err:#}").contains("no monitor part"), "{err:#}");
        let mut graceless = toml::Table::new();
        graceless.insert("name".into(), toml::Value::String("m".into()));
        let err = spec_of(graceless, "monitor", Path::new("panda.toml")).expect_err("no grace");
        assert!(format!("{err:#}").contains("needs a grace"), "{err:#}");
    }

    #[test]
    fn a_duration_that_does_not_parse_names_the_field() {
        let table: toml::Table = toml::from_str(
            "name = \"x\"\nruntime = { kind = \"process\", argv = [\"true\"] }\ntimeout = \"soon\"\n",
        )
        .expect("toml");
        let err = spec_of(table, "job", Path::new("panda.toml")).expect_err("refused");
        assert!(format!("{err:#}").contains("timeout = \"soon\""), "{err:#}");
    }
}
