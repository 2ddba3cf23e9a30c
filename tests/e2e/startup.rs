//! Start-up as a load balancer sees it: `/readyz` says ready only once every app serves,
//! and SIGTERM at any point of start-up stops the process within its grace period.

use std::path::Path;
use std::time::{Duration, Instant};

use platform_test_guests as guests;

use crate::support::{Proc, bin, free_port, write_manifest};

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Two Go apps (one of them the large `net/http/cgi` mux), so compiling takes seconds.
fn two_go_apps(dir: &Path) -> std::path::PathBuf {
    write_manifest(
        dir,
        &[
            ("shop.wasm", &guests::go("cgimux")),
            ("hello.wasm", &guests::go("hello")),
        ],
        r#"
[[apps]]
name = "shop"
module = "shop.wasm"
routes = ["/shop"]

[[apps]]
name = "hello"
module = "hello.wasm"
routes = ["/hello"]
"#,
    )
}

/// The manifest's routes and what each answers.
const ROUTES: &[(&str, &str)] = &[("/shop/items/3", "item 3\n"), ("/hello", "hello from Go\n")];

/// A `platform` process on known ports (start-up is watched before any banner).
struct Started {
    proc: Proc,
    traffic: String,
    admin: String,
}

fn spawn(name: &str, args: &[&str], data_dir: &Path, artifact_dir: &Path) -> Started {
    let (traffic, admin) = (free_port(), free_port());
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend([
        format!("--listen=127.0.0.1:{traffic}"),
        format!("--admin-listen=127.0.0.1:{admin}"),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--artifact-dir".into(),
        artifact_dir.display().to_string(),
    ]);
    Started {
        proc: Proc::spawn(name, &bin(), &all),
        traffic: format!("http://127.0.0.1:{traffic}"),
        admin: format!("http://127.0.0.1:{admin}"),
    }
}

/// Polls `/readyz` until 200 (answers before that must be 503 or no connection yet).
fn wait_ready(p: &mut Started, within: Duration) {
    let c = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let deadline = Instant::now() + within;
    loop {
        if let Ok(r) = c.get(format!("{}/readyz", p.admin)).send() {
            match r.status().as_u16() {
                200 => return,
                503 => {}
                other => panic!("/readyz answered {other}"),
            }
        }
        if let Ok(Some(s)) = p.proc.child.try_wait() {
            panic!("exited ({s}) before ready:\n{}", p.proc.output());
        }
        assert!(
            Instant::now() < deadline,
            "not ready in {within:?}:\n{}",
            p.proc.output()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Once ready, every route answers its app's response at once (never "no app is routed").
fn assert_all_routes_serve(p: &Started) {
    let c = client();
    for (path, body) in ROUTES {
        let r = c.get(format!("{}{path}", p.traffic)).send().unwrap();
        let status = r.status().as_u16();
        let text = r.text().unwrap();
        assert_eq!(
            (status, text.as_str()),
            (200, *body),
            "{path} right after ready"
        );
    }
}

#[test]
fn up_is_ready_only_once_every_manifest_app_serves() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = two_go_apps(dir.path());
    let data = tempfile::tempdir().unwrap();
    // Its own artifact directory: both modules compile during start-up, so a ready that
    // came before they are loaded would be seen (compiling the mux takes seconds).
    let artifacts = tempfile::tempdir().unwrap();
    let mut p = spawn(
        "up",
        &["up", "--manifest", manifest.to_str().unwrap()],
        data.path(),
        artifacts.path(),
    );
    wait_ready(&mut p, Duration::from_secs(180));
    let compiled = std::fs::read_dir(artifacts.path()).unwrap().count();
    assert!(compiled >= 2, "{compiled} artifacts at ready");
    assert_all_routes_serve(&p);
}

#[test]
fn runtime_with_a_manifest_is_ready_only_once_its_modules_are_compiled() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = two_go_apps(dir.path());
    let data = tempfile::tempdir().unwrap();
    // Its own artifact directory: nothing compiled yet.
    let artifacts = tempfile::tempdir().unwrap();
    let mut p = spawn(
        "runtime",
        &["runtime", "--manifest", manifest.to_str().unwrap()],
        data.path(),
        artifacts.path(),
    );
    wait_ready(&mut p, Duration::from_secs(180));
    // Ready means compiled: the artifacts are on disk before any request asked for them.
    let compiled = std::fs::read_dir(artifacts.path()).unwrap().count();
    assert!(compiled >= 2, "{compiled} artifacts at ready");
    assert_all_routes_serve(&p);
}

/// `platform up` serving the two Go apps, ready, as the control plane runtimes follow.
struct Control {
    up: Started,
    token: String,
    _dirs: [tempfile::TempDir; 2],
}

fn control_with_two_go_apps() -> Control {
    let dir = tempfile::tempdir().unwrap();
    let manifest = two_go_apps(dir.path());
    let data = tempfile::tempdir().unwrap();
    let mut up = spawn(
        "up",
        &["up", "--manifest", manifest.to_str().unwrap()],
        data.path(),
        &guests::shared_artifact_dir(),
    );
    wait_ready(&mut up, Duration::from_secs(180));
    let token = std::fs::read_to_string(data.path().join("admin-token")).unwrap();
    Control {
        up,
        token: token.trim().to_string(),
        _dirs: [dir, data],
    }
}

/// `platform runtime` following `control_url`, with `extra` arguments.
fn runtime_following(
    control_url: &str,
    token: &str,
    extra: &[&str],
    data: &Path,
    artifacts: &Path,
) -> Started {
    let mut args = vec!["runtime", "--control-url", control_url, "--token", token];
    args.extend_from_slice(extra);
    spawn("runtime", &args, data, artifacts)
}

#[test]
fn runtime_following_control_is_ready_once_the_snapshot_modules_are_fetched() {
    let control = control_with_two_go_apps();
    let data = tempfile::tempdir().unwrap();
    let artifacts = tempfile::tempdir().unwrap();
    let mut rt = runtime_following(
        &control.up.admin,
        &control.token,
        &[],
        data.path(),
        artifacts.path(),
    );
    wait_ready(&mut rt, Duration::from_secs(60));
    let fetched = std::fs::read_dir(artifacts.path()).unwrap().count();
    assert!(fetched >= 2, "{fetched} artifacts at ready");
    assert_all_routes_serve(&rt);
}

/// Sends SIGTERM to `p` and asserts it exits cleanly within `grace` plus a margin. Sent
/// before the process could install its handlers (`when` is empty), SIGTERM's default
/// action, ending the process at once, is as good.
fn sigterm_exits_within(p: &mut Started, grace: Duration, when: &str) {
    use std::os::unix::process::ExitStatusExt as _;
    let sent = Instant::now();
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &p.proc.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "{when:?}: kill");
    // The margin covers process teardown on a loaded two-core machine, not start-up work.
    let limit = grace + Duration::from_secs(5);
    loop {
        if let Some(status) = p.proc.child.try_wait().unwrap() {
            let before_handlers = when.is_empty() && status.signal() == Some(15);
            assert!(
                status.success() || before_handlers,
                "{when:?}: exited with {status}:\n{}",
                p.proc.output()
            );
            return;
        }
        assert!(
            sent.elapsed() < limit,
            "SIGTERM at {when:?}: still running {limit:?} after it:\n{}",
            p.proc.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The start-up points SIGTERM is sent at: right away, then at each step of a deploy as
/// `platform up` logs it (the second app's steps too, past the first compile).
const UP_POINTS: &[&str] = &[
    "",
    "uploading",
    "compiling the module ahead of time",
    "created release #1",
    "added route /shop",
    "creating app hello",
    "module loaded",
];

#[test]
fn sigterm_at_any_point_of_up_start_up_exits_within_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = two_go_apps(dir.path());
    let grace = Duration::from_secs(2);
    for point in UP_POINTS {
        let data = tempfile::tempdir().unwrap();
        let mut p = spawn(
            "up",
            &[
                "up",
                "--manifest",
                manifest.to_str().unwrap(),
                "--shutdown-grace",
                "2s",
            ],
            data.path(),
            &guests::shared_artifact_dir(),
        );
        if !point.is_empty() {
            p.proc.wait_line(point, Duration::from_secs(120));
        }
        sigterm_exits_within(&mut p, grace, point);
    }
}

#[test]
fn sigterm_during_runtime_manifest_start_up_exits_within_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = two_go_apps(dir.path());
    let grace = Duration::from_secs(2);
    // Right away, while the first module compiles, and while the second does.
    for point in ["", "Platform runtime serving on", "module ready"] {
        let data = tempfile::tempdir().unwrap();
        let artifacts = tempfile::tempdir().unwrap();
        let mut p = spawn(
            "runtime",
            &[
                "runtime",
                "--manifest",
                manifest.to_str().unwrap(),
                "--shutdown-grace",
                "2s",
            ],
            data.path(),
            artifacts.path(),
        );
        if !point.is_empty() {
            p.proc.wait_line(point, Duration::from_secs(120));
        }
        sigterm_exits_within(&mut p, grace, point);
    }
}

#[test]
fn sigterm_during_runtime_start_up_following_control_exits_within_the_grace_period() {
    let grace = Duration::from_secs(2);
    // Control not there (yet): the runtime retries the feed snapshot until stopped.
    let data = tempfile::tempdir().unwrap();
    let artifacts = tempfile::tempdir().unwrap();
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    for point in ["", "cannot read the feed snapshot"] {
        let mut p = runtime_following(
            &nowhere,
            "t",
            &["--shutdown-grace", "2s"],
            data.path(),
            artifacts.path(),
        );
        if !point.is_empty() {
            p.proc.wait_line(point, Duration::from_secs(60));
        }
        sigterm_exits_within(&mut p, grace, point);
    }
    // Control there: while the snapshot is read and its modules are fetched.
    let control = control_with_two_go_apps();
    for point in ["Platform runtime serving on", "feed snapshot applied"] {
        let data = tempfile::tempdir().unwrap();
        let artifacts = tempfile::tempdir().unwrap();
        let mut p = runtime_following(
            &control.up.admin,
            &control.token,
            &["--shutdown-grace", "2s"],
            data.path(),
            artifacts.path(),
        );
        p.proc.wait_line(point, Duration::from_secs(60));
        sigterm_exits_within(&mut p, grace, point);
    }
}
