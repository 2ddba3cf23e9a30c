//! Builds one test guest and prints the path of its `.wasm`, for scripts outside Cargo's
//! test harness (the dashboard's browser tests in `tests/browser/`).
//!
//! ```text
//! cargo run -q -p platform-test-guests --bin guest -- go cgimux
//! cargo run -q -p platform-test-guests --bin guest -- sdk-example hello
//! cargo run -q -p platform-test-guests --bin guest -- rust hello-wagi
//! ```
//!
//! Exits with 2 on bad usage and 1 when the build fails (its message on stderr).

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: guest (go | sdk-example | rust) <name>";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kind, name] = args.as_slice() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let build: fn(&str) -> PathBuf = match kind.as_str() {
        "go" => platform_test_guests::go,
        "sdk-example" => platform_test_guests::sdk_example,
        "rust" => platform_test_guests::rust,
        _ => {
            eprintln!("unknown guest kind {kind:?}; {USAGE}");
            return ExitCode::from(2);
        }
    };
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        eprintln!("bad guest name {name:?}: give a directory name, e.g. cgimux");
        return ExitCode::from(2);
    }
    let dir = match kind.as_str() {
        "go" => platform_test_guests::repo_root().join("tests/guests/go"),
        "sdk-example" => platform_test_guests::repo_root().join("sdk/go/examples"),
        _ => platform_test_guests::repo_root().join("tests/guests/rust"),
    }
    .join(name);
    if !dir.is_dir() {
        eprintln!(
            "no guest {kind} {name}: {} is not a directory",
            dir.display()
        );
        return ExitCode::from(2);
    }
    // The library panics with a message that says what to do (install Go, …); print just
    // that message and turn the panic into an exit code.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("the guest build failed");
        eprintln!("{msg}");
    }));
    match std::panic::catch_unwind(|| build(name)) {
        Ok(path) if path.is_file() => {
            println!("{}", path.display());
            ExitCode::SUCCESS
        }
        Ok(path) => {
            eprintln!(
                "the build of {kind} {name} left no file at {}",
                path.display()
            );
            ExitCode::FAILURE
        }
        Err(_) => ExitCode::FAILURE,
    }
}
