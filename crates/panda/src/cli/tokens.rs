//! `panda token …`.

use chrono::{DateTime, Utc};
use clap::Subcommand;

use super::connection::{Connection, user};
use crate::output::{self, Format};

/// `panda token …`: API tokens.
#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a token; its secret is printed once
    #[command(after_help = "Examples:
  panda token create ci-deploy
  panda token create dashboard-viewer --read-only")]
    Create {
        /// A name for people: lower-case letters, digits and '-'
        name: String,
        /// May only read
        #[arg(long)]
        read_only: bool,
    },
    /// List tokens (never their secrets)
    List,
    /// Revoke a token; it stops working at once
    Revoke {
        /// The token's name
        name: String,
    },
}

pub(crate) async fn token(
    command: TokenCommand,
    connection: &Connection,
) -> anyhow::Result<std::process::ExitCode> {
    let client = connection.client()?;
    match command {
        TokenCommand::Create { name, read_only } => {
            let scope = if read_only { "read_only" } else { "admin" };
            let created = client.token_create(&name, scope).await.map_err(user)?;
            match connection.output {
                Format::Json | Format::Yaml => output::structured(&created, connection.output)?,
                Format::Table => {
                    println!("{}", created["secret"].as_str().unwrap_or_default());
                    eprintln!("token {name} ({scope}) created; its secret is shown only now");
                }
            }
        }
        TokenCommand::List => {
            let tokens = client.tokens().await.map_err(user)?;
            match connection.output {
                Format::Json | Format::Yaml => output::structured(&tokens, connection.output)?,
                Format::Table => {
                    let mut table = output::table(&["name", "scope", "created", "last used"]);
                    let now = Utc::now();
                    let when = |value: &serde_json::Value| {
                        value
                            .as_str()
                            .and_then(|t| t.parse::<DateTime<Utc>>().ok())
                            .map_or_else(
                                || "-".to_owned(),
                                |at| panda_core::human::relative(at, now),
                            )
                    };
                    for token in &tokens {
                        table.add_row(vec![
                            token["name"].as_str().unwrap_or_default().to_owned(),
                            token["scope"].as_str().unwrap_or_default().to_owned(),
                            when(&token["created_at"]),
                            when(&token["last_used_at"]),
                        ]);
                    }
                    println!("{}", output::render(&table));
                }
            }
        }
        TokenCommand::Revoke { name } => {
            client.token_revoke(&name).await.map_err(user)?;
            match connection.output {
                Format::Json | Format::Yaml => output::structured(
                    &serde_json::json!({"token": name, "revoked": true}),
                    connection.output,
                )?,
                Format::Table => println!("token {name} revoked"),
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
