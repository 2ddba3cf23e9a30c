//! The cluster shape with real processes: PostgreSQL, NATS, `platform control`,
//! `platform worker` and two `platform runtime`s. Deploy, change routes, roll back: both
//! runtimes serve the new state within a second. Restart NATS in the middle: they converge.
//! The control plane's dashboard shows both runtimes' logs and traffic.

use std::path::Path;
use std::time::{Duration, Instant};

use platform_test_guests as guests;

use crate::support::{Proc, bin, free_port};

const PG: &str = "postgres://postgres@127.0.0.1:5432/test";

pub(crate) struct Schema(String);

impl Schema {
    pub(crate) fn create() -> Self {
        let name = format!("e2e_{}", std::process::id()) + &format!("_{}", free_port());
        psql(&format!("CREATE SCHEMA {name}"));
        Schema(name)
    }
    pub(crate) fn url(&self) -> String {
        format!("{PG}?options=-c%20search_path%3D{}", self.0)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        psql(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.0));
    }
}

fn psql(sql: &str) {
    let ok = std::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-qc",
            sql,
        ])
        .status()
        .expect("psql (PostgreSQL client) on PATH")
        .success();
    assert!(ok, "psql {sql}");
}

/// The NATS users of `deploy/base/nats` (its `auth.conf`, used as deployed), with a
/// password per role generated for this test.
pub(crate) struct NatsRoles {
    port: u16,
    dir: std::path::PathBuf,
    password: String,
}

impl NatsRoles {
    /// Writes the server config for `port` under `dir`: the deploy's `auth.conf`, JetStream
    /// in `dir/js`, loopback only.
    pub(crate) fn new(port: u16, dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let config = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/base/nats/config.yaml"),
        )
        .unwrap();
        let auth: String = config
            .lines()
            .skip_while(|l| l.trim() != "auth.conf: |")
            .skip(1)
            .take_while(|l| l.starts_with("    ") || l.trim().is_empty())
            .map(|l| l.get(4..).unwrap_or("").to_string() + "\n")
            .collect();
        assert!(
            auth.contains("authorization"),
            "no auth.conf in deploy/base/nats/config.yaml"
        );
        std::fs::write(dir.join("auth.conf"), auth).unwrap();
        std::fs::write(
            dir.join("nats.conf"),
            format!(
                "listen: 127.0.0.1:{port}\njetstream {{ store_dir: \"{}\" }}\ninclude auth.conf\n",
                dir.join("js").display()
            ),
        )
        .unwrap();
        // A letter first: NATS reads a value that starts with a digit as a number.
        let password = format!("p{:x}{:x}", std::process::id(), free_port());
        NatsRoles {
            port,
            dir: dir.to_path_buf(),
            password,
        }
    }

    /// The role's password (every role's user is named after the role).
    pub(crate) fn password(&self, role: &str) -> String {
        format!("{}{role}", self.password)
    }

    /// A URL carrying the role's credentials.
    pub(crate) fn url_for(&self, role: &str) -> String {
        format!(
            "nats://{role}:{}@127.0.0.1:{}",
            self.password(role),
            self.port
        )
    }

    /// Options for a client of `role` (async-nats ignores credentials in URLs).
    pub(crate) fn options(&self, role: &str) -> async_nats::ConnectOptions {
        async_nats::ConnectOptions::with_user_and_password(role.into(), self.password(role))
    }

    /// The server's URL, without credentials.
    pub(crate) fn plain_url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Connects as `role`.
    pub(crate) async fn connect(&self, role: &str) -> async_nats::Client {
        self.options(role).connect(self.plain_url()).await.unwrap()
    }

    /// Starts the server (again) with this config; returns once it is ready.
    pub(crate) fn start(&self) -> Proc {
        let mut env = Vec::new();
        for role in ["control", "worker", "runtime", "publisher"] {
            let upper = role.to_uppercase();
            env.push((format!("NATS_{upper}_USER"), role.to_string()));
            env.push((format!("NATS_{upper}_PASSWORD"), self.password(role)));
        }
        let mut p = Proc::spawn_env(
            "nats-server",
            Path::new("/usr/sbin/nats-server"),
            &[
                "-c".to_string(),
                self.dir.join("nats.conf").display().to_string(),
            ],
            &env,
        );
        p.wait_line("Server is ready", Duration::from_secs(10));
        p
    }
}

/// NATS is part of the trust boundary: without credentials there is no connection, and
/// neither a runtime's credentials (a compromised runtime) nor a tenant publisher's can put
/// an event on the route feed: the server refuses the publish, nobody receives it.
fn forged_feed_is_refused(nats_url: &str, nats: &NatsRoles) {
    use futures::StreamExt as _;
    use prost::Message as _;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        assert!(
            async_nats::connect(nats_url).await.is_err(),
            "NATS accepted a client without credentials"
        );
        let wrong = async_nats::ConnectOptions::with_user_and_password(
            "runtime".into(),
            nats.password("runtime") + "x",
        )
        .connect(nats.plain_url())
        .await;
        assert!(wrong.is_err(), "NATS accepted a wrong password");
        let control = nats.connect("control").await;
        let mut feed = control.subscribe("platform.feed.v1").await.unwrap();
        control.flush().await.unwrap();
        // What a forger would send: "this app is gone", at a revision far ahead.
        let forged = platform_proto::v1::FeedEvent {
            revision: 1 << 40,
            change: Some(platform_proto::v1::feed_event::Change::AppRemoved(
                "hello".into(),
            )),
        }
        .encode_to_vec();
        for role in ["runtime", "publisher"] {
            let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
            let c = nats
                .options(role)
                .event_callback(move |e| {
                    let tx = tx.clone();
                    async move {
                        let _ = tx.send(e.to_string());
                    }
                })
                .connect(nats.plain_url())
                .await
                .unwrap();
            c.publish("platform.feed.v1", forged.clone().into())
                .await
                .unwrap();
            c.flush().await.unwrap();
            let refusal = tokio::time::timeout(Duration::from_secs(5), async {
                while let Some(e) = events.recv().await {
                    if e.to_lowercase().contains("permissions violation") {
                        return e;
                    }
                }
                String::new()
            })
            .await
            .unwrap_or_default();
            assert!(
                !refusal.is_empty(),
                "the server did not refuse {role}'s publish on the feed"
            );
            let seen = tokio::time::timeout(Duration::from_millis(500), feed.next()).await;
            assert!(seen.is_err(), "{role} published on the feed: {seen:?}");
        }
    });
}

fn body(url: &str) -> Option<(u16, String)> {
    let c = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?;
    let r = c.get(url).send().ok()?;
    Some((r.status().as_u16(), r.text().ok()?))
}

/// Polls every runtime until all answer `path` with `want` (status, body prefix); returns
/// how long that took.
fn converge(runtimes: &[String], path: &str, want: (u16, &str), within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let all = runtimes.iter().all(|rt| {
            body(&format!("{rt}{path}")).is_some_and(|(s, b)| s == want.0 && b.starts_with(want.1))
        });
        if all {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "runtimes did not all serve {path} as {want:?} within {within:?}: {:?}",
            runtimes
                .iter()
                .map(|rt| body(&format!("{rt}{path}")))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn cli(server: &str, token: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(bin())
        .args(args)
        .args(["--server", server, "--token", token])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "platform {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// PostgreSQL (a schema of its own), NATS, `platform control` and `platform worker`: a
/// cluster's control side, ready for runtimes to follow.
/// Fields drop in order: the processes stop before their data and schema go.
/// NATS asks every part for its role's credentials, as deployed.
pub(crate) struct ControlPlane {
    pub worker: Proc,
    pub control: Proc,
    pub nats_server: Proc,
    pub dir: tempfile::TempDir,
    pub schema: Schema,
    /// NATS without credentials (every client is refused there).
    pub nats_url: String,
    /// NATS users and their passwords; restarts the server.
    pub nats: NatsRoles,
    /// The API (and dashboard) base URL.
    pub server: String,
    /// The bootstrap admin token.
    pub token: String,
    /// A token with the `runtime` role, for runtimes.
    pub runtime_token: String,
}

impl ControlPlane {
    pub(crate) fn start() -> Self {
        Self::start_with(&[])
    }

    /// Like [`Self::start`], with `control_args` added to `platform control`'s flags.
    pub(crate) fn start_with(control_args: &[String]) -> Self {
        let schema = Schema::create();
        let dir = tempfile::tempdir().unwrap();
        let nats_port = free_port();
        let nats_url = format!("nats://127.0.0.1:{nats_port}");
        let nats = NatsRoles::new(nats_port, &dir.path().join("nats"));
        let nats_server = nats.start();
        let blob_url = format!("file://{}", dir.path().join("blobs").display());
        // Control and worker give their credentials as flags (runtimes in the URL).
        let common = |data: &str| -> Vec<String> {
            let role = if data == "control" {
                "control"
            } else {
                "worker"
            };
            vec![
                "--database-url".into(),
                schema.url(),
                "--nats-url".into(),
                nats_url.clone(),
                "--nats-user".into(),
                role.into(),
                "--nats-password".into(),
                nats.password(role),
                "--blob-url".into(),
                blob_url.clone(),
                "--data-dir".into(),
                dir.path().join(data).display().to_string(),
            ]
        };
        let mut control = Proc::spawn(
            "control",
            &bin(),
            &[
                vec!["control".into(), "--listen".into(), "127.0.0.1:0".into()],
                common("control"),
                control_args.to_vec(),
            ]
            .concat(),
        );
        let server = control.wait_url("control plane listening", Duration::from_secs(60));
        let token = std::fs::read_to_string(dir.path().join("control/admin-token"))
            .unwrap()
            .trim()
            .to_string();
        let mut worker = Proc::spawn(
            "worker",
            &bin(),
            &[
                vec![
                    "worker".into(),
                    "--admin-listen".into(),
                    "127.0.0.1:0".into(),
                ],
                common("worker"),
            ]
            .concat(),
        );
        worker.wait_line("compile worker running", Duration::from_secs(60));
        let runtime_token = cli(
            &server,
            &token,
            &["tokens", "create", "runtimes", "--role", "runtime"],
        )
        .lines()
        .next()
        .unwrap()
        .trim()
        .to_string();
        ControlPlane {
            schema,
            dir,
            nats_url,
            nats,
            nats_server,
            control,
            worker,
            server,
            token,
            runtime_token,
        }
    }
}

/// Starts `platform runtime` number `i` following the control plane over NATS (data and
/// artifacts under `dir/rt<i>`, plus `extra` flags); returns it with its traffic URL once
/// it has applied the feed snapshot.
pub(crate) fn start_runtime(
    dir: &Path,
    server: &str,
    nats_url: &str,
    token: &str,
    i: usize,
    extra: &[&str],
) -> (Proc, String) {
    start_runtime_on(dir, server, nats_url, token, i, "127.0.0.1:0", extra)
}

/// [`start_runtime`] with its traffic listener on `listen`.
pub(crate) fn start_runtime_on(
    dir: &Path,
    server: &str,
    nats_url: &str,
    token: &str,
    i: usize,
    listen: &str,
    extra: &[&str],
) -> (Proc, String) {
    let data = dir.join(format!("rt{i}"));
    let artifacts = data.join("artifacts").display().to_string();
    let data = data.display().to_string();
    let mut args = vec![
        "runtime",
        "--control-url",
        server,
        "--nats-url",
        nats_url,
        "--token",
        token,
        "--listen",
        listen,
        "--admin-listen",
        "127.0.0.1:0",
        "--events-listen",
        "127.0.0.1:0",
        "--artifact-dir",
        &artifacts,
        "--data-dir",
        &data,
    ];
    args.extend_from_slice(extra);
    let args: Vec<String> = args.into_iter().map(String::from).collect();
    let mut rt = Proc::spawn(&format!("runtime-{i}"), &bin(), &args);
    let url = rt.wait_url("runtime serving on", Duration::from_secs(60));
    rt.wait_line("feed snapshot applied", Duration::from_secs(30));
    (rt, url)
}

#[test]
fn control_worker_and_two_runtimes_over_postgres_and_nats() {
    let hello = guests::go("hello");
    let mux = guests::go("cgimux");
    let counter = guests::sdk_example("counter");
    let ControlPlane {
        schema: _schema,
        dir,
        nats_url,
        nats,
        mut nats_server,
        control,
        worker,
        server,
        token,
        runtime_token,
    } = ControlPlane::start();
    let mut runtimes = Vec::new();
    let mut urls = Vec::new();
    for i in 0..2 {
        // Runtimes: the runtime role's NATS user (in the URL) and a runtime-role token.
        let (rt, url) = start_runtime(
            dir.path(),
            &server,
            &nats.url_for("runtime"),
            &runtime_token,
            i,
            &[],
        );
        urls.push(url);
        runtimes.push(rt);
    }

    // Deploy through control, the store, the worker's compile and the events.
    let out = cli(
        &server,
        &token,
        &[
            "deploy",
            hello.to_str().unwrap(),
            "--app",
            "hello",
            "--route",
            "/hello",
        ],
    );
    assert!(out.contains("/hello"), "{out}");
    let took = converge(
        &urls,
        "/hello",
        (200, "hello from Go"),
        Duration::from_secs(15),
    );
    eprintln!("deploy reached both runtimes in {took:?}");
    forged_feed_is_refused(&nats_url, &nats);
    converge(
        &urls,
        "/hello",
        (200, "hello from Go"),
        Duration::from_secs(15),
    );
    // Runtimes fetched the worker's artifact rather than compiling it themselves.
    for i in 0..2 {
        let n = std::fs::read_dir(dir.path().join(format!("rt{i}/artifacts")))
            .unwrap()
            .count();
        assert_eq!(n, 1, "runtime {i} should hold the fetched artifact");
    }

    // A wasi:http component goes the same way: uploaded, compiled by the worker
    // (precompile_component), its artifact fetched and mapped by both runtimes.
    let component = guests::http_component();
    cli(
        &server,
        &token,
        &[
            "deploy",
            component.to_str().unwrap(),
            "--app",
            "comp",
            "--route",
            "/comp",
        ],
    );
    converge(
        &urls,
        "/comp",
        (200, "hello from a component"),
        Duration::from_secs(20),
    );
    for i in 0..2 {
        let n = std::fs::read_dir(dir.path().join(format!("rt{i}/artifacts")))
            .unwrap()
            .count();
        assert_eq!(n, 2, "runtime {i} should hold both fetched artifacts");
    }

    // Change routes: add one, remove one.
    cli(
        &server,
        &token,
        &[
            "deploy",
            hello.to_str().unwrap(),
            "--app",
            "hello",
            "--route",
            "/hi",
        ],
    );
    converge(
        &urls,
        "/hi",
        (200, "hello from Go"),
        Duration::from_secs(15),
    );
    let routes = cli(&server, &token, &["routes", "--json"]);
    let routes: serde_json::Value = serde_json::from_str(&routes).unwrap();
    let hello_route = routes
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["pathPrefix"] == "/hello")
        .unwrap();
    let del = reqwest::blocking::Client::new()
        .post(format!("{server}/platform.v1.RouteService/DeleteRoute"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "id": hello_route["id"] }))
        .send()
        .unwrap();
    assert!(del.status().is_success());
    converge(&urls, "/hello", (404, ""), Duration::from_secs(15));

    // A new release, then roll back.
    cli(
        &server,
        &token,
        &[
            "deploy",
            mux.to_str().unwrap(),
            "--app",
            "hello",
            "--route",
            "/hi",
        ],
    );
    converge(
        &urls,
        "/hi/items/7",
        (200, "item 7"),
        Duration::from_secs(15),
    );
    cli(&server, &token, &["rollback", "hello"]);
    let took = converge(
        &urls,
        "/hi",
        (200, "hello from Go"),
        Duration::from_secs(15),
    );
    eprintln!("rollback reached both runtimes in {took:?}");

    // NATS goes away: runtimes keep serving what they know; a change made meanwhile
    // arrives once NATS is back.
    nats_server.kill();
    std::thread::sleep(Duration::from_millis(300));
    converge(
        &urls,
        "/hi",
        (200, "hello from Go"),
        Duration::from_secs(15),
    );
    cli(&server, &token, &["rollback", "hello", "2"]);
    std::thread::sleep(Duration::from_millis(500));
    for u in &urls {
        assert_eq!(
            body(&format!("{u}/hi")).unwrap().1,
            "hello from Go\n",
            "still the last known state"
        );
    }
    let nats_server = nats.start();
    let took = converge(
        &urls,
        "/hi/items/8",
        (200, "item 8"),
        Duration::from_secs(20),
    );
    eprintln!("runtimes converged {took:?} after NATS came back");
    // And events flow again.
    cli(&server, &token, &["rollback", "hello", "1"]);
    converge(
        &urls,
        "/hi",
        (200, "hello from Go"),
        Duration::from_secs(15),
    );

    // An SDK app in per-request isolation: the worker made its snapshot once, the runtimes
    // fetch it; its key-value store lives in JetStream, so both runtimes count together.
    cli(
        &server,
        &token,
        &[
            "deploy",
            counter.to_str().unwrap(),
            "--app",
            "counter",
            "--route",
            "/count",
            "--isolation",
            "per-request",
        ],
    );
    // GET is not routed by the app's mux (POST only): 405 shows the app is live.
    converge(&urls, "/count/visits", (405, ""), Duration::from_secs(10));
    let c = reqwest::blocking::Client::new();
    for (i, want) in [(0, "1"), (1, "2"), (0, "3")] {
        let r = c.post(format!("{}/count/visits", urls[i])).send().unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().unwrap().trim(), want, "runtime {i}");
    }
    for i in 0..2 {
        let snapshots = std::fs::read_dir(dir.path().join(format!("rt{i}/artifacts")))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with("-snapshot.cwasm")
            })
            .count();
        assert_eq!(snapshots, 1, "runtime {i} should hold the fetched snapshot");
    }

    // The control plane's dashboard shows what both runtimes served (they publish logs and
    // traffic counts on NATS; this also runs after the NATS restart above).
    let dash = Dashboard::sign_in(&server, &token);
    let before = dash.stable_requests("hello");
    for i in 0..6 {
        let r = c
            .get(format!("{}/hi", urls[i % 2]))
            .header("x-request-id", format!("obs-e2e-{i}"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let started = Instant::now();
    while dash.requests("hello") != before + 6 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the dashboard counted {} requests of hello, not {}: {}",
            dash.requests("hello"),
            before + 6,
            dash.get("/apps/hello/traffic")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let logs = dash.get("/logs?app=hello");
    for i in 0..6 {
        assert!(
            logs.contains(&format!("data-request-id=\"obs-e2e-{i}\"")),
            "request obs-e2e-{i} is not in the dashboard's logs:\n{logs}"
        );
    }
    assert!(!logs.contains("No runtime runs in this process"), "{logs}");

    drop(runtimes);
    drop(worker);
    drop(control);
    drop(nats_server);
}

/// A signed-in dashboard session on the control plane.
struct Dashboard {
    base: String,
    cookie: String,
    http: reqwest::blocking::Client,
}

impl Dashboard {
    /// Signs in through the form, as a browser does (form cookie, CSRF token, token).
    fn sign_in(base: &str, token: &str) -> Self {
        let http = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let form = http.get(format!("{base}/login")).send().unwrap();
        let form_cookie = cookie(&form, "platform_login");
        let page = form.text().unwrap();
        let csrf = page
            .split(r#"<meta name="csrf-token" content=""#)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no CSRF token on the sign-in page:\n{page}"))
            .to_string();
        let signed_in = http
            .post(format!("{base}/login"))
            .header("cookie", form_cookie)
            .form(&[("token", token), ("next", "/apps"), ("csrf", csrf.as_str())])
            .send()
            .unwrap();
        assert_eq!(signed_in.status(), 303, "sign-in refused");
        Dashboard {
            base: base.to_string(),
            cookie: cookie(&signed_in, "platform_session"),
            http,
        }
    }

    fn get(&self, path: &str) -> String {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        r.text().unwrap()
    }

    /// Requests of `app` in the last hour, from its traffic fragment.
    fn requests(&self, app: &str) -> u64 {
        let html = self.get(&format!("/apps/{app}/traffic"));
        if html.contains("No requests in the last hour.") {
            return 0;
        }
        html.split(r#"data-testid="traffic-summary">"#)
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no traffic summary in:\n{html}"))
    }

    /// [`Self::requests`] once it stopped changing (earlier requests' counts have arrived).
    fn stable_requests(&self, app: &str) -> u64 {
        let mut last = self.requests(app);
        loop {
            std::thread::sleep(Duration::from_millis(700));
            let now = self.requests(app);
            if now == last {
                return now;
            }
            last = now;
        }
    }
}

/// `name=value` of the cookie `name` a response sets.
fn cookie(r: &reqwest::blocking::Response, name: &str) -> String {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{} set no cookie {name}", r.url()))
        .to_string()
}
