//! The benchmark report: JSON for machines, a markdown table for people.

use serde::Serialize;

use crate::loadgen::LoadResult;

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// What was measured.
    pub name: String,
    /// Requests per second (HTTP runs).
    pub rps: Option<f64>,
    /// Median, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// Throughput relative to the baseline of its group.
    pub vs_baseline: Option<f64>,
    /// Failed requests.
    pub errors: u64,
}

impl Row {
    /// A latency-only row.
    pub fn latency(name: &str, p50_us: f64, p99_us: f64) -> Self {
        Row {
            name: name.into(),
            rps: None,
            p50_us,
            p99_us,
            vs_baseline: None,
            errors: 0,
        }
    }
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Connections used for throughput rows.
    pub concurrency: usize,
    /// CPU count seen.
    pub cpus: usize,
    /// Rows in order.
    pub rows: Vec<Row>,
    /// Derived figures.
    pub notes: Vec<String>,
}

impl Report {
    /// An empty report.
    pub fn new(concurrency: &usize) -> Self {
        Report {
            concurrency: *concurrency,
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Adds an HTTP run, with its ratio to `baseline_rps`.
    pub fn http(&mut self, name: &str, r: &LoadResult, baseline_rps: f64) {
        self.rows.push(Row {
            name: name.into(),
            rps: Some(r.rps),
            p50_us: r.p50_us,
            p99_us: r.p99_us,
            vs_baseline: Some(r.rps / baseline_rps),
            errors: r.errors,
        });
    }

    /// Adds an in-process latency run; `base` is the bare-wasmtime figure it compares to.
    pub fn inproc(&mut self, name: &str, (p50, p99): (f64, f64), base: Option<(f64, f64)>) {
        self.rows.push(Row {
            name: name.into(),
            rps: None,
            p50_us: p50,
            p99_us: p99,
            vs_baseline: base.map(|b| b.0 / p50),
            errors: 0,
        });
    }

    /// Adds a derived figure.
    pub fn note(&mut self, s: String) {
        self.notes.push(s);
    }

    /// The markdown table.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "| What ({} CPUs; throughput rows at {} connections unless noted) | req/s | p50 | p99 | ratio |\n|---|---|---|---|---|\n",
            self.cpus, self.concurrency
        );
        for r in &self.rows {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                r.name,
                r.rps.map_or("".into(), |v| format!("{v:.0}")),
                fmt_us(r.p50_us),
                fmt_us(r.p99_us),
                r.vs_baseline.map_or("".into(), |v| format!("{v:.3}×")),
            ));
        }
        for n in &self.notes {
            s.push_str(&format!("\n- {n}"));
        }
        s.push('\n');
        s
    }
}

fn fmt_us(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.1} µs")
    }
}
