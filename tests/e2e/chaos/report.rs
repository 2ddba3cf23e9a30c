//! The chaos test's figures, written to `target/chaos/report.md`.

use std::fmt::Write as _;
use std::time::Duration;

/// One fault's figures.
#[derive(Debug, Default)]
pub struct Row {
    pub fault: String,
    /// How long the service was away.
    pub down: Duration,
    /// From the service's return until both runtimes served control's revision.
    pub converged: Option<Duration>,
    pub deploys_ok: u64,
    pub deploys_failed: u64,
    /// Traffic requests sent during the phase (both runtimes).
    pub requests: u64,
    /// Requests on runtimes that stayed up that got no 2xx.
    pub failed_on_live: u64,
    /// Of those, 5xx answers.
    pub server_errors: u64,
    /// Requests to a killed runtime that got no answer.
    pub lost_on_killed: u64,
}

/// Every phase's row.
#[derive(Debug, Default)]
pub struct Report {
    pub rows: Vec<Row>,
}

impl Report {
    /// Writes the table to `target/chaos/report.md` (or under `$CARGO_TARGET_DIR`).
    pub fn write(&self) {
        let mut md = String::from(
            "# Chaos report\n\nWritten by `tests/e2e/chaos` (`cargo test --test e2e chaos`): PostgreSQL 15 and NATS of its own, control, worker and two runtimes as processes, a client releasing and routing in a loop, another sending `GET` to both runtimes.\n\n| fault | service away | deploy rounds ok / failed | requests | not 2xx on live runtimes | of which 5xx | unanswered on the killed runtime | runtimes at control's revision after return |\n|---|---|---|---|---|---|---|---|\n",
        );
        for r in &self.rows {
            let converged = r
                .converged
                .map(|d| format!("{:.2} s", d.as_secs_f64()))
                .unwrap_or_else(|| "not within the bound".into());
            let _ = writeln!(
                md,
                "| {} | {:.2} s | {} / {} | {} | {} | {} | {} | {} |",
                r.fault,
                r.down.as_secs_f64(),
                r.deploys_ok,
                r.deploys_failed,
                r.requests,
                r.failed_on_live,
                r.server_errors,
                r.lost_on_killed,
                converged
            );
        }
        let dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
            .join("chaos");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("report.md"), &md).unwrap();
        eprintln!("{md}");
    }
}
