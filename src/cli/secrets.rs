//! `platform secrets set|list|unset`: write-only values guests read as environment variables.

use std::io::{IsTerminal as _, Read as _};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use platform_proto::v1::{DeleteSecretRequest, ListSecretsRequest, SetSecretRequest};

use super::{ConnArgs, connect, format_time, print_json};

/// `platform secrets ...`.
#[derive(Debug, Subcommand)]
pub enum SecretAction {
    /// Set a secret; the value is read from stdin (one trailing newline dropped) or, verbatim,
    /// from --from-file. The app's live release is released again with it.
    Set {
        /// App name.
        app: String,
        /// Secret name (an environment variable name).
        name: String,
        /// Read the value from this file instead of stdin.
        #[arg(long)]
        from_file: Option<PathBuf>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// List an app's secrets: names and update times, never values.
    List {
        /// App name.
        app: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Remove a secret (the live release is released again without it).
    Unset {
        /// App name.
        app: String,
        /// Secret name.
        name: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
}

/// Runs a `secrets` command.
pub async fn run(action: SecretAction) -> anyhow::Result<()> {
    match action {
        SecretAction::Set {
            app,
            name,
            from_file,
            conn,
        } => {
            let value = match from_file {
                Some(p) => std::fs::read_to_string(&p)
                    .with_context(|| format!("reading {}", p.display()))?,
                None => read_stdin()?,
            };
            let api = connect(&conn)?;
            let r = api
                .set_secret(SetSecretRequest {
                    app: app.clone(),
                    name: name.clone(),
                    value,
                })
                .await?;
            if conn.json {
                return print_json(&r);
            }
            if r.release_number == 0 {
                println!("{app}: secret {name} set; the next release gets it");
            } else {
                println!(
                    "{app}: secret {name} set; release #{} is live with it",
                    r.release_number
                );
            }
            Ok(())
        }
        SecretAction::List { app, conn } => {
            let api = connect(&conn)?;
            let secrets = api
                .list_secrets(ListSecretsRequest { app: app.clone() })
                .await?
                .secrets;
            if conn.json {
                return print_json(&secrets);
            }
            if secrets.is_empty() {
                println!("{app}: no secrets (set one with `platform secrets set {app} NAME`)");
                return Ok(());
            }
            println!("{:<32} UPDATED", "NAME");
            for s in secrets {
                println!(
                    "{:<32} {}",
                    s.name,
                    s.update_time
                        .map(|t| format_time(t.seconds))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
        SecretAction::Unset { app, name, conn } => {
            let api = connect(&conn)?;
            let r = api
                .delete_secret(DeleteSecretRequest {
                    app: app.clone(),
                    name: name.clone(),
                })
                .await?;
            if conn.json {
                return print_json(&r);
            }
            if r.release_number == 0 {
                println!("{app}: secret {name} removed");
            } else {
                println!(
                    "{app}: secret {name} removed; release #{} is live without it",
                    r.release_number
                );
            }
            Ok(())
        }
    }
}

/// The value from stdin, without one trailing newline (`echo` and a terminal add one).
fn read_stdin() -> anyhow::Result<String> {
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("Type the value, then Enter and Ctrl-D:");
    }
    let mut value = String::new();
    stdin
        .read_to_string(&mut value)
        .context("reading the value from stdin")?;
    let trimmed = value
        .strip_suffix("\r\n")
        .or_else(|| value.strip_suffix('\n'))
        .unwrap_or(&value);
    if trimmed.is_empty() {
        bail!("no value on stdin (pipe it in, or use --from-file)");
    }
    Ok(trimmed.to_string())
}
