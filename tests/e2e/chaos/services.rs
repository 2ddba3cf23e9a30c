//! The chaos test's own services: a PostgreSQL 15 instance (initdb/pg_ctl on a free port
//! and a temp dir, never the machine's shared server), a NATS server with JetStream, and
//! the platform's processes, each of which can be killed and started again.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cluster::{NatsRoles, cli, start_runtime};
use crate::support::{Proc, bin, free_port};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A PostgreSQL instance of this test's own, in a temp dir, on a free port.
///
/// PostgreSQL refuses to run as root: as root, its commands run as the `postgres` user
/// (`runuser`), in a directory handed to that user.
pub struct OwnPostgres {
    dir: tempfile::TempDir,
    port: u16,
    as_root: bool,
}

impl OwnPostgres {
    /// Creates the cluster (`initdb`, trust auth) and starts it.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let as_root = is_root();
        if as_root {
            run_ok(Command::new("chown").arg("postgres:").arg(dir.path()));
        }
        let pg = OwnPostgres {
            port: free_port(),
            dir,
            as_root,
        };
        run_ok(pg.pg_command("initdb").args([
            "-D",
            &pg.data(),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        ]));
        pg.start_again();
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// A command of PostgreSQL's, run as the `postgres` user when this process is root.
    fn pg_command(&self, program: &str) -> Command {
        let program = Path::new(PG_BIN).join(program);
        if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    /// The database URL (database `postgres`, user `postgres`).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (after [`Self::stop`]); returns once it accepts connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        run_ok(self.pg_command("pg_ctl").args([
            "-D",
            &self.data(),
            "-l",
            &self.dir.path().join("log").display().to_string(),
            "-o",
            &options,
            "-w",
            "-t",
            "60",
            "start",
        ]));
    }

    /// Stops the server the hard way (`-m immediate`: no clean shutdown, as a crash).
    pub fn stop(&self) {
        let _ = self
            .pg_command("pg_ctl")
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .output();
    }

    /// Runs `sql` with `psql`; returns its unaligned, tuples-only output.
    pub fn query(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-Atqc", sql])
            .output()
            .expect("psql (PostgreSQL client) on PATH");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn run_ok(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Control, worker, NATS, PostgreSQL and two runtimes, each restartable.
/// Fields drop in order: runtimes and platform processes before NATS and PostgreSQL.
pub struct Cluster {
    /// The runtimes (`None` while one is killed).
    pub runtimes: Vec<Option<Proc>>,
    /// Their traffic URLs (a restarted runtime listens on a new port).
    pub urls: Arc<Mutex<Vec<String>>>,
    pub worker: Option<Proc>,
    pub control: Option<Proc>,
    pub nats_server: Option<Proc>,
    pub nats: NatsRoles,
    pub pg: OwnPostgres,
    pub dir: tempfile::TempDir,
    /// The control plane's URL (a fixed port, so runtimes find it again after a restart).
    pub server: String,
    pub token: String,
    pub runtime_token: String,
}

impl Cluster {
    /// Starts everything; returns once both runtimes applied the feed snapshot.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pg = OwnPostgres::start();
        let nats = NatsRoles::new(free_port(), &dir.path().join("nats"));
        let nats_server = nats.start();
        let server = format!("http://127.0.0.1:{}", free_port());
        let mut c = Cluster {
            runtimes: Vec::new(),
            urls: Arc::new(Mutex::new(Vec::new())),
            worker: None,
            control: None,
            nats_server: Some(nats_server),
            nats,
            pg,
            dir,
            server,
            token: String::new(),
            runtime_token: String::new(),
        };
        c.start_control();
        c.token = std::fs::read_to_string(c.dir.path().join("control/admin-token"))
            .unwrap()
            .trim()
            .to_string();
        c.start_worker();
        c.runtime_token = cli(
            &c.server,
            &c.token,
            &["tokens", "create", "runtimes", "--role", "runtime"],
        )
        .lines()
        .next()
        .unwrap()
        .trim()
        .to_string();
        for i in 0..2 {
            c.runtimes.push(None);
            c.urls.lock().unwrap().push(String::new());
            c.start_runtime(i);
        }
        c
    }

    fn common(&self, role: &str, data: &str) -> Vec<String> {
        vec![
            "--database-url".into(),
            self.pg.url(),
            "--nats-url".into(),
            self.nats.plain_url(),
            "--nats-user".into(),
            role.into(),
            "--nats-password".into(),
            self.nats.password(role),
            "--blob-url".into(),
            format!("file://{}", self.blob_dir().display()),
            "--data-dir".into(),
            self.dir.path().join(data).display().to_string(),
        ]
    }

    /// The shared blob store's directory.
    pub fn blob_dir(&self) -> PathBuf {
        self.dir.path().join("blobs")
    }

    /// Where control (`control`) or the worker (`worker`) stage uploads and compiles.
    pub fn staging_dir(&self, part: &str) -> PathBuf {
        self.dir.path().join(part).join("staging")
    }

    /// Starts control (again) on its fixed port; returns once it listens.
    pub fn start_control(&mut self) {
        let listen = self.server.trim_start_matches("http://").to_string();
        let mut p = Proc::spawn(
            "control",
            &bin(),
            &[
                vec!["control".into(), "--listen".into(), listen],
                self.common("control", "control"),
            ]
            .concat(),
        );
        p.wait_line("control plane listening", Duration::from_secs(60));
        self.control = Some(p);
    }

    /// Starts the compile worker (again); returns once it runs.
    pub fn start_worker(&mut self) {
        let mut p = Proc::spawn(
            "worker",
            &bin(),
            &[
                vec![
                    "worker".into(),
                    "--admin-listen".into(),
                    "127.0.0.1:0".into(),
                ],
                self.common("worker", "worker"),
            ]
            .concat(),
        );
        p.wait_line("compile worker running", Duration::from_secs(60));
        self.worker = Some(p);
    }

    /// Starts runtime `i` (again, on its data dir); returns once it applied a snapshot.
    pub fn start_runtime(&mut self, i: usize) {
        let (rt, url) = start_runtime(
            self.dir.path(),
            &self.server,
            &self.nats.url_for("runtime"),
            &self.runtime_token,
            i,
            &[],
        );
        self.runtimes[i] = Some(rt);
        self.urls.lock().unwrap()[i] = url;
    }

    /// `kill -9`s a process of the cluster.
    pub fn kill(p: &mut Option<Proc>) {
        if let Some(mut p) = p.take() {
            p.kill();
        }
    }

    /// The feed revision runtime `i` last applied, from its log.
    pub fn runtime_revision(&self, i: usize) -> Option<u64> {
        let rt = self.runtimes[i].as_ref()?;
        let lines = rt.stderr.lock().unwrap();
        lines.iter().rev().find_map(|l| {
            let l = strip_ansi(l);
            if !l.contains("applied") {
                return None;
            }
            let rest = l.split("revision=").nth(1)?;
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
    }

    /// Files left in a staging directory.
    pub fn staged(&self, part: &str) -> Vec<String> {
        std::fs::read_dir(self.staging_dir(part))
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A log line without its terminal colour codes.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
