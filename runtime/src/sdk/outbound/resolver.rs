//! Name resolution for the pooled outbound client, under the operator's address policy.
//!
//! reqwest asks a [`Resolve`] for the addresses of a name each time it opens a connection
//! (never for an address literal: those are checked before the request is sent). This
//! resolver looks the name up, drops every address the policy refuses, and fails when none
//! is left, so a connection only ever goes to an address that was checked for it, also
//! when DNS answers differently from one connection to the next.
//!
//! reqwest does not tell a resolver the port, and the policy needs it (`HOST:PORT`
//! entries, the platform's own listeners). The request's checked destination travels with
//! the request's future in a task-local ([`with_destination`]); a resolution outside one,
//! or for another name, is refused.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use futures::future::BoxFuture;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::policy::{AddrPolicy, Refusal};

/// The host and port a request was checked for.
#[derive(Debug, Clone)]
pub(super) struct Destination {
    /// Lower-case host name, as in the URL.
    pub host: String,
    /// The URL's port (or its scheme's).
    pub port: u16,
}

tokio::task_local! {
    static DESTINATION: Destination;
}

/// Runs `fut` (a request being sent) with its checked destination.
pub(super) async fn with_destination<F: Future>(dest: Destination, fut: F) -> F::Output {
    DESTINATION.scope(dest, fut).await
}

/// Looks a name up (the system resolver; a fake in tests).
pub(super) type Lookup =
    Arc<dyn Fn(String, u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> + Send + Sync>;

/// The system resolver (`getaddrinfo`, on tokio's blocking pool).
pub(super) fn system_lookup() -> Lookup {
    Arc::new(|host: String, port: u16| {
        Box::pin(async move {
            tokio::net::lookup_host((host.as_str(), port))
                .await
                .map(|addrs| addrs.collect())
        })
    })
}

/// Why the resolver gave no address; found again in reqwest's error chain.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The lookup failed.
    #[error("cannot resolve {host}: {source}")]
    Dns {
        /// The name.
        host: String,
        /// What the resolver said.
        source: io::Error,
    },
    /// The name has no address.
    #[error("{0} has no addresses")]
    NoAddresses(String),
    /// Every address was refused.
    #[error("{host} resolves only to refused addresses: {}", list(refused))]
    Refused {
        /// The name.
        host: String,
        /// Each address and why.
        refused: Vec<Refusal>,
    },
    /// A connection outside a checked request.
    #[error("no checked request is connecting to {0}")]
    Unchecked(String),
}

fn list(refused: &[Refusal]) -> String {
    refused
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Resolves through [`Lookup`] and keeps only the addresses the policy allows.
pub(super) struct PolicyResolver {
    policy: Arc<AddrPolicy>,
    lookup: Lookup,
}

impl PolicyResolver {
    /// A resolver applying `policy` to what `lookup` finds.
    pub(super) fn new(policy: Arc<AddrPolicy>, lookup: Lookup) -> Self {
        PolicyResolver { policy, lookup }
    }
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_ascii_lowercase();
        // Read now: the task-local is only set while the request's future is polled.
        let dest = DESTINATION.try_with(Destination::clone).ok();
        let policy = self.policy.clone();
        let lookup = self.lookup.clone();
        Box::pin(async move {
            let Some(dest) = dest.filter(|d| d.host == host) else {
                return Err(ResolveError::Unchecked(host).into());
            };
            let found =
                lookup(host.clone(), dest.port)
                    .await
                    .map_err(|source| ResolveError::Dns {
                        host: host.clone(),
                        source,
                    })?;
            if found.is_empty() {
                return Err(ResolveError::NoAddresses(host).into());
            }
            let mut allowed = Vec::with_capacity(found.len());
            let mut refused = Vec::new();
            for a in found {
                let a = SocketAddr::new(a.ip(), dest.port);
                match policy.check(Some(&host), a) {
                    Ok(()) => allowed.push(a),
                    Err(r) if !refused.contains(&r) => refused.push(r),
                    Err(_) => {}
                }
            }
            if allowed.is_empty() {
                return Err(ResolveError::Refused { host, refused }.into());
            }
            if !refused.is_empty() {
                tracing::debug!(%host, refused = %list(&refused), "dropped refused addresses");
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}
