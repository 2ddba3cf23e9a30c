//! How every part of Platform reaches NATS and proves which role it plays.
//!
//! NATS is part of the trust boundary: the route feed, KV buckets and guest telemetry travel
//! over it, so in a cluster each part authenticates as its role's user (see
//! `deploy/base/nats/config.yaml`), and the server's per-user permissions decide what it may
//! publish and subscribe to. [`NatsArgs`] are the flags every subcommand shares; [`NatsArgs::options`]
//! is the one place that turns them into `async_nats::ConnectOptions`. Credentials may also
//! sit in the URL (`nats://user:password@host:4222`, or `nats://token@host:4222`): they are
//! taken out of it here (async-nats does not read them) and never logged.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Args;

/// NATS server and credentials (flags and `PLATFORM_NATS_*` environment variables).
#[derive(Debug, Clone, Default, Args)]
pub struct NatsArgs {
    /// NATS server, e.g. nats://127.0.0.1:4222 (credentials may be in the URL:
    /// nats://user:password@host:4222) [default: no NATS; in-process events or polling].
    #[arg(long, env = "PLATFORM_NATS_URL")]
    pub nats_url: Option<String>,
    /// NATS credentials file (a `.creds` file with the user's JWT and NKey seed).
    #[arg(long, env = "PLATFORM_NATS_CREDS", conflicts_with_all = ["nats_user", "nats_token"])]
    pub nats_creds: Option<PathBuf>,
    /// NATS user name (with --nats-password): the role's user in the server's config.
    #[arg(
        long,
        env = "PLATFORM_NATS_USER",
        requires = "nats_password",
        conflicts_with = "nats_token"
    )]
    pub nats_user: Option<String>,
    /// NATS password of --nats-user.
    #[arg(
        long,
        env = "PLATFORM_NATS_PASSWORD",
        hide_env_values = true,
        requires = "nats_user"
    )]
    pub nats_password: Option<String>,
    /// NATS authentication token.
    #[arg(long, env = "PLATFORM_NATS_TOKEN", hide_env_values = true)]
    pub nats_token: Option<String>,
}

impl NatsArgs {
    fn raw_url(&self) -> Option<&str> {
        self.nats_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
    }

    /// The server URL to connect to, without credentials, when NATS is used at all.
    pub fn url(&self) -> Option<String> {
        let raw = self.raw_url()?;
        Some(match url::Url::parse(raw) {
            Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
                let _ = u.set_username("");
                let _ = u.set_password(None);
                u.to_string().trim_end_matches('/').to_string()
            }
            _ => raw.to_string(),
        })
    }

    /// The URL for logs and error messages: no credentials in it.
    pub fn display_url(&self) -> String {
        self.url().unwrap_or_default()
    }

    /// User and password, or a token, given in the URL.
    fn url_credentials(&self) -> Option<(String, Option<String>)> {
        let u = url::Url::parse(self.raw_url()?).ok()?;
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        (!u.username().is_empty()).then(|| (decode(u.username()), u.password().map(decode)))
    }

    /// Connection options carrying these credentials; each caller adds its own name and
    /// callbacks. Fails when a credentials file cannot be read.
    pub async fn options(&self) -> anyhow::Result<async_nats::ConnectOptions> {
        let options = async_nats::ConnectOptions::new();
        if let Some(path) = &self.nats_creds {
            return options
                .credentials_file(path)
                .await
                .with_context(|| format!("cannot read NATS credentials {}", path.display()));
        }
        match (&self.nats_user, &self.nats_password, &self.nats_token) {
            (Some(user), Some(password), None) => {
                Ok(options.user_and_password(user.clone(), password.clone()))
            }
            (None, None, Some(token)) => Ok(options.token(token.clone())),
            (None, None, None) => Ok(match self.url_credentials() {
                Some((user, Some(password))) => options.user_and_password(user, password),
                Some((token, None)) => options.token(token),
                None => options,
            }),
            _ => bail!(
                "give NATS credentials one way: --nats-creds, --nats-user with --nats-password, or --nats-token"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::NatsArgs;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        nats: NatsArgs,
    }

    #[test]
    fn credentials_are_given_one_way() {
        let ok = Cli::try_parse_from([
            "x",
            "--nats-url",
            "nats://127.0.0.1:4222",
            "--nats-user",
            "runtime",
            "--nats-password",
            "p",
        ]);
        assert!(ok.is_ok());
        for bad in [
            vec!["x", "--nats-user", "runtime"],
            vec!["x", "--nats-password", "p"],
            vec![
                "x",
                "--nats-user",
                "u",
                "--nats-password",
                "p",
                "--nats-token",
                "t",
            ],
            vec!["x", "--nats-creds", "/x.creds", "--nats-token", "t"],
        ] {
            assert!(Cli::try_parse_from(&bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn credentials_in_urls_are_taken_out() {
        let a = NatsArgs {
            nats_url: Some("nats://runtime:s3cr%40t@nats:4222".into()),
            ..NatsArgs::default()
        };
        assert_eq!(a.url().as_deref(), Some("nats://nats:4222"));
        assert!(!a.display_url().contains("s3cr"), "{}", a.display_url());
        assert_eq!(
            a.url_credentials(),
            Some(("runtime".into(), Some("s3cr@t".into())))
        );
        let t = NatsArgs {
            nats_url: Some("nats://tok3n@127.0.0.1:4222".into()),
            ..NatsArgs::default()
        };
        assert_eq!(t.url_credentials(), Some(("tok3n".into(), None)));
        let plain = NatsArgs {
            nats_url: Some("nats://127.0.0.1:4222".into()),
            ..NatsArgs::default()
        };
        assert_eq!(plain.url().as_deref(), Some("nats://127.0.0.1:4222"));
        assert_eq!(plain.url_credentials(), None);
    }
}
