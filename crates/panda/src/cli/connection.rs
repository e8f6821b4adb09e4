//! Where the server is and who is asking: the connection flags, `panda login` and what it
//! saves, `panda status`, and the one-line error every client command prints.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use chrono::Utc;
use clap::Args;
use panda_client::{Client, ClientError};

use crate::UserError;
use crate::output::{self, Format};

/// Where the server is and who is asking: the flags every client command takes.
#[derive(Debug, Args)]
pub(crate) struct Connection {
    /// The Panda server's URL [default: the one `panda login` saved, or http://127.0.0.1:7070]
    #[arg(long, global = true, env = "PANDA_URL")]
    server: Option<String>,
    /// An API token [default: the one `panda login` saved, or a local server's admin token]
    #[arg(long, global = true, env = "PANDA_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// How to print results
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Format::Table)]
    pub(super) output: Format,
}

impl Connection {
    /// The server and the token: flags and environment first, then what `panda login` saved,
    /// then a local server on its defaults.
    fn resolved(&self) -> (String, Option<String>) {
        let saved = Login::read();
        let server = self
            .server
            .clone()
            .or_else(|| saved.as_ref().map(|l| l.server.clone()))
            .unwrap_or_else(|| panda_client::DEFAULT_URL.to_owned());
        let token = self
            .token
            .clone()
            .or_else(|| saved.map(|l| l.token))
            .or_else(local_admin_token);
        (server, token)
    }

    /// The server's URL, as the client commands reach it.
    pub(crate) fn url(&self) -> String {
        self.resolved().0
    }

    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        let (server, token) = self.resolved();
        Client::new(&server, token).map_err(user)
    }
}

/// What `panda login` saves: a server and a token for it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Login {
    server: String,
    token: String,
}

impl Login {
    /// `$XDG_CONFIG_HOME/panda/config.toml`.
    fn path() -> Option<PathBuf> {
        use etcetera::BaseStrategy;
        let base = etcetera::choose_base_strategy().ok()?;
        Some(base.config_dir().join("panda").join("config.toml"))
    }

    fn read() -> Option<Self> {
        let text = std::fs::read_to_string(Self::path()?).ok()?;
        toml::from_str(&text).ok()
    }

    fn write(&self) -> anyhow::Result<PathBuf> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = Self::path().context("find the config directory")?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        let _ = std::fs::remove_file(&path);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("write {}", path.display()))?;
        file.write_all(toml::to_string(self)?.as_bytes())?;
        Ok(path)
    }
}

/// `panda login`: checks the token against the server, then saves both for later commands.
pub(crate) async fn login(connection: &Connection) -> anyhow::Result<std::process::ExitCode> {
    let (server, token) = connection.resolved();
    let Some(token) = token else {
        return Err(UserError::new(
            "no token to log in with",
            "pass --token TOKEN (from `panda token create NAME` on the server)",
        )
        .into());
    };
    let client = Client::new(&server, Some(token.clone())).map_err(user)?;
    client.jobs("all").await.map_err(user)?;
    let path = Login {
        server: server.clone(),
        token,
    }
    .write()?;
    println!("logged in to {server}; saved in {}", path.display());
    Ok(std::process::ExitCode::SUCCESS)
}

/// `panda status`: whether the server answers, and what it holds.
pub(crate) async fn status(connection: &Connection) -> anyhow::Result<std::process::ExitCode> {
    let client = connection.client()?;
    let jobs = client.jobs("all").await.map_err(user)?;
    let dead = client.dead_letters(None).await.map_err(user)?;
    // A monitor has a schedule too, but Panda runs none of its slots.
    let is_cronjob =
        |j: &&panda_core::api::JobView| j.job.spec.schedule.is_some() && !j.job.spec.is_monitor();
    let cronjobs = jobs.iter().filter(is_cronjob).count();
    let suspended = jobs
        .iter()
        .filter(|j| is_cronjob(j) && j.job.spec.suspended)
        .count();
    let monitors = jobs.iter().filter(|j| j.job.spec.is_monitor()).count();
    let services = jobs.iter().filter(|j| j.job.spec.is_service()).count();
    let triggered = jobs.len() - cronjobs - monitors - services;
    let next = jobs
        .iter()
        .filter(is_cronjob)
        .filter_map(|j| j.next_run_at.map(|at| (at, j.job.spec.name.to_string())))
        .min();
    let dead_count = match dead.next {
        Some(_) => format!("{}+", dead.executions.len()),
        None => dead.executions.len().to_string(),
    };
    match connection.output {
        Format::Json | Format::Yaml => output::structured(
            &serde_json::json!({
                "server": client.base(),
                "cronjobs": cronjobs,
                "suspended": suspended,
                "jobs": triggered,
                "services": services,
                "monitors": monitors,
                "dead_letters": dead.executions.len(),
                // The count stops at one page: true when there are more.
                "dead_letters_more": dead.next.is_some(),
                "next_run": next.as_ref().map(|(at, name)| serde_json::json!({"job": name, "at": at})),
            }),
            connection.output,
        )?,
        Format::Table => {
            println!("Server:        {} (ready)", client.base());
            println!("Cronjobs:      {cronjobs} ({suspended} suspended)");
            println!("Jobs:          {triggered}");
            println!("Services:      {services}");
            println!("Monitors:      {monitors}");
            println!("Dead letters:  {dead_count}");
            if let Some((at, name)) = next {
                println!(
                    "Next run:      {name} {}",
                    panda_core::human::relative(at, Utc::now())
                );
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// The admin token a local server wrote, if there is one to read.
fn local_admin_token() -> Option<String> {
    let dir = match std::env::var_os("PANDA_DATA_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => crate::store::default_data_dir().ok()?,
    };
    std::fs::read_to_string(dir.join("admin.token"))
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// A client error as the one-line error and hint every command prints.
pub(crate) fn user(err: ClientError) -> anyhow::Error {
    let message = match &err {
        ClientError::Api { error, .. } => error.message.clone(),
        ClientError::Transport { message, .. } => message.clone(),
    };
    let hint = match (err.hint(), err.retry_after()) {
        (Some(hint), Some(after)) => Some(format!(
            "{hint} (the server asks to wait {})",
            panda_core::human::exact(after)
        )),
        (hint, _) => hint.map(str::to_owned),
    };
    match hint {
        Some(hint) => UserError::new(message, hint).into(),
        None => UserError::plain(message).into(),
    }
}
