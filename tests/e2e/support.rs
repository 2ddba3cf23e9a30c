//! Spawning `platform` and talking to it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `platform` process.
pub struct Platform {
    pub child: Child,
    /// Base URL of the traffic listener.
    pub traffic: String,
    /// Base URL of the admin listener.
    pub admin: String,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
    pub data_dir: tempfile::TempDir,
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_platform"))
}

/// Starts `platform <args>` on free ports and waits for its banner.
pub fn start(args: &[&str]) -> Platform {
    start_in(args, tempfile::tempdir().unwrap())
}

pub fn start_in(args: &[&str], data_dir: tempfile::TempDir) -> Platform {
    start_in_env(args, data_dir, &[])
}

/// Like [`start_in`], with extra environment variables.
pub fn start_in_env(args: &[&str], data_dir: tempfile::TempDir, env: &[(&str, &str)]) -> Platform {
    let mut cmd = Command::new(bin());
    cmd.envs(env.iter().copied());
    cmd.args(args)
        .arg("--listen=127.0.0.1:0")
        .arg("--admin-listen=127.0.0.1:0")
        .arg("--data-dir")
        .arg(data_dir.path())
        .arg("--artifact-dir")
        .arg(platform_test_guests::shared_artifact_dir())
        .env_remove("PORT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn platform");
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    pump(child.stdout.take().unwrap(), stdout.clone());
    pump(child.stderr.take().unwrap(), stderr.clone());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let lines = stdout.lock().unwrap().clone();
        let admin = lines.iter().find_map(|l| {
            l.split_whitespace()
                .find(|w| w.ends_with("/healthz"))
                .map(|w| w.trim_end_matches("/healthz").to_string())
        });
        if let Some(admin) = admin {
            let traffic = lines
                .iter()
                .find_map(|l| {
                    l.split_whitespace()
                        .find(|w| w.starts_with("http://"))
                        .map(str::to_string)
                })
                .map(|u| {
                    let rest = &u["http://".len()..];
                    format!("http://{}", rest.split('/').next().unwrap())
                })
                .unwrap();
            return Platform {
                child,
                traffic,
                admin,
                stdout,
                stderr,
                data_dir,
            };
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "platform exited early ({status}):\n{}",
                stderr.lock().unwrap().join("\n")
            );
        }
        assert!(
            Instant::now() < deadline,
            "no banner; stderr:\n{}",
            stderr.lock().unwrap().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pump(r: impl std::io::Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            into.lock().unwrap().push(line);
        }
    });
}

impl Platform {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.traffic, path)
    }

    pub fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// Waits for exit and returns the status code.
    pub fn wait(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            assert!(
                Instant::now() < deadline,
                "platform did not exit in {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Runs the CLI against this process's admin API, signed in as the admin whose token
    /// `up` saved in the data directory (no token or server from the environment).
    pub fn cli_output(&self, args: &[&str]) -> std::process::Output {
        Command::new(bin())
            .args(args)
            .arg("--server")
            .arg(&self.admin)
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .env_remove("PLATFORM_TOKEN")
            .env_remove("PLATFORM_SERVER")
            .output()
            .unwrap()
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a manifest into `dir`, copying modules next to it.
pub fn write_manifest(dir: &Path, modules: &[(&str, &Path)], body: &str) -> PathBuf {
    for (name, src) in modules {
        std::fs::copy(src, dir.join(name)).unwrap();
    }
    let path = dir.join("platform.toml");
    std::fs::write(&path, body).unwrap();
    path
}

/// Runs `platform <args>` to completion.
pub fn run(args: &[&str]) -> std::process::Output {
    Command::new(bin()).args(args).output().unwrap()
}

/// Any child process with its output collected.
pub struct Proc {
    pub child: Child,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
    pub name: String,
}

impl Proc {
    /// Starts `program args`.
    pub fn spawn(name: &str, program: &Path, args: &[String]) -> Proc {
        Self::spawn_env(name, program, args, &[])
    }

    /// Starts `program args` with `env` added to its environment.
    pub fn spawn_env(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
    ) -> Proc {
        let mut child = Command::new(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env_remove("PORT")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        pump(child.stdout.take().unwrap(), stdout.clone());
        pump(child.stderr.take().unwrap(), stderr.clone());
        Proc {
            child,
            stdout,
            stderr,
            name: name.to_string(),
        }
    }

    /// Waits for a stdout or stderr line containing `needle`; returns it.
    pub fn wait_line(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let found = self
                .stdout
                .lock()
                .unwrap()
                .iter()
                .chain(self.stderr.lock().unwrap().iter())
                .find(|l| l.contains(needle))
                .cloned();
            if let Some(l) = found {
                return l;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before printing {needle:?}:\n{}",
                    self.name,
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{}: no {needle:?} in {within:?}:\n{}",
                self.name,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The first `http://...` URL on a line containing `needle`, without its path.
    pub fn wait_url(&mut self, needle: &str, within: Duration) -> String {
        let line = self.wait_line(needle, within);
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"));
        let rest = &url["http://".len()..];
        format!("http://{}", rest.split('/').next().unwrap())
    }

    pub fn output(&self) -> String {
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            self.stdout.lock().unwrap().join("\n"),
            self.stderr.lock().unwrap().join("\n")
        )
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; fine for a test's own servers).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `cmd` with `stdin` as its input; asserts it succeeded and returns its output.
pub fn output_with_input(cmd: &mut Command, stdin: &str) -> std::process::Output {
    use std::io::Write as _;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
