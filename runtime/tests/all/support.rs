//! A runtime on a real socket, with helpers to deploy guests to it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use platform_runtime::{
    AppSpec, AppTarget, Limits, LocalModuleStore, RouteSpec, RouteTable, Runtime, RuntimeConfig,
};
use tokio::net::TcpListener;

pub struct TestHost {
    pub rt: Arc<Runtime>,
    pub addr: SocketAddr,
    /// The internal CloudEvents listener.
    pub events_addr: SocketAddr,
    pub store: LocalModuleStore,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

/// One app to deploy.
pub struct App<'a> {
    pub name: &'a str,
    pub tenant: &'a str,
    pub module: &'a Path,
    pub routes: &'a [&'a str],
    pub env: &'a [(&'a str, &'a str)],
    pub limits: Limits,
    pub isolation: platform_runtime::Isolation,
    pub outbound: &'a [&'a str],
    pub release: &'a str,
}

impl<'a> App<'a> {
    pub fn new(name: &'a str, module: &'a Path, routes: &'a [&'a str]) -> Self {
        App {
            name,
            tenant: "t",
            module,
            routes,
            env: &[],
            limits: Limits::default(),
            isolation: Default::default(),
            outbound: &[],
            release: "1",
        }
    }
}

impl TestHost {
    /// A host sharing the machine-wide artifact cache (each guest compiles once).
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut RuntimeConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalModuleStore::new(dir.path().join("modules")).unwrap();
        // Bound first, like the real processes: the runtime must know its own listener
        // (outbound HTTP never reaches it).
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = RuntimeConfig::new(dir.path());
        config.artifact_dir = platform_test_guests::shared_artifact_dir();
        config.engine.max_instances = 64;
        config.outbound.platform_listeners.push(addr);
        configure(&mut config);
        let rt = Runtime::new(config, Arc::new(store.clone())).unwrap();
        let events = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let events_addr = events.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (events_tx, events_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(platform_runtime::server::serve_events(
            events,
            rt.clone(),
            async move {
                let _ = events_rx.await;
            },
            Duration::from_secs(5),
        ));
        let task = tokio::spawn(platform_runtime::server::serve(
            listener,
            rt.clone(),
            async move {
                let _ = rx.await;
                let _ = events_tx.send(());
            },
            Duration::from_secs(5),
        ));
        TestHost {
            rt,
            addr,
            events_addr,
            store,
            stop: Some(tx),
            task: Some(task),
            _dir: dir,
        }
    }

    pub fn deploy(&self, apps: &[App<'_>]) {
        let mut entries = Vec::new();
        for app in apps {
            let bytes = std::fs::read(app.module).unwrap();
            let digest = self.store.put(&bytes).unwrap();
            let spec = Arc::new(AppSpec {
                app: app.name.into(),
                tenant: app.tenant.into(),
                release: app.release.into(),
                release_number: 0,
                module: digest,
                env: app
                    .env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                limits: app.limits.clone(),
                isolation: app.isolation,
                allowed_outbound_hosts: app.outbound.iter().map(|s| s.to_string()).collect(),
            });
            let target = Arc::new(AppTarget::single(spec));
            for r in app.routes {
                entries.push((RouteSpec::parse(r).unwrap(), target.clone()));
            }
        }
        self.rt.routes.replace(RouteTable::build(entries).unwrap());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A URL on the internal CloudEvents listener.
    pub fn events_url(&self, path: &str) -> String {
        format!("http://{}{}", self.events_addr, path)
    }

    /// Gracefully stops the listener, waiting for in-flight requests.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Sends a request with a `body_len`-byte body over a raw connection and returns the
/// response's status. The host may answer (413) and close before the client has finished
/// sending; an HTTP client reports that as a failed write, this reads the answer anyway.
pub async fn status_of_large_post(addr: std::net::SocketAddr, path: &str, body_len: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {body_len}\r\nConnection: close\r\n\r\n"
    );
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(head.as_bytes()).await;
        let _ = wr.write_all(&vec![0u8; body_len]).await;
        wr
    });
    let mut buf = Vec::new();
    let _ = rd.read_to_end(&mut buf).await;
    writer.abort();
    let text = String::from_utf8_lossy(&buf);
    let status = text.split(' ').nth(1).unwrap_or_default();
    status
        .parse()
        .unwrap_or_else(|_| panic!("no status in {text:?}"))
}
