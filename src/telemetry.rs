//! Logs and traces: `tracing` to stderr (text or JSON lines), and OpenTelemetry export over
//! OTLP/HTTP when an endpoint is given.

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::args::CommonArgs;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Flushes pending spans when dropped (at process exit).
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take()
            && let Err(e) = p.shutdown()
        {
            eprintln!("OpenTelemetry shutdown: {e}");
        }
    }
}

/// The target of each request's span and of its `request served` line: on stderr only with
/// `--access-log`; always in OTLP traces.
pub const ACCESS_LOG_TARGET: &str = "platform::request";

/// The filter when neither `PLATFORM_LOG` nor `RUST_LOG` gives a valid one.
const DEFAULT_FILTER: &str = "info,wasmtime=warn,cranelift=warn,h2=warn,hyper=warn";

/// The operator's filter directives: `PLATFORM_LOG`, else `RUST_LOG`, else the default.
fn filter_directives() -> String {
    ["PLATFORM_LOG", "RUST_LOG"]
        .into_iter()
        .filter_map(|var| std::env::var(var).ok())
        .find(|d| EnvFilter::try_new(d).is_ok())
        .unwrap_or_else(|| DEFAULT_FILTER.to_string())
}

/// The directives for stderr: the operator's, with the per-request lines left out unless
/// `access_log` (or the directives name [`ACCESS_LOG_TARGET`] themselves).
fn stderr_directives(directives: &str, access_log: bool) -> String {
    if access_log || directives.contains(ACCESS_LOG_TARGET) {
        directives.to_string()
    } else {
        format!("{directives},{ACCESS_LOG_TARGET}=warn")
    }
}

/// Sets up the global subscriber: logs on stderr in `common.log_format`, filtered by
/// `PLATFORM_LOG`/`RUST_LOG` (per-request lines only with `--access-log`), and traces to
/// `common.otlp_endpoint`, an OTLP/HTTP base URL such as `http://collector:4318`
/// (`/v1/traces` is added unless a path is given). Each output has its own filter, so a
/// request's span is made only when a trace or the access log wants it.
pub fn init(common: &CommonArgs, service: &str) -> anyhow::Result<TelemetryGuard> {
    let directives = filter_directives();
    let stderr_filter = EnvFilter::new(stderr_directives(&directives, common.access_log));
    let fmt_layer = match common.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_filter(stderr_filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_filter(stderr_filter)
            .boxed(),
    };
    let (otel_layer, provider) = match common.otlp_endpoint.as_deref() {
        Some(endpoint) => {
            let url = traces_url(endpoint);
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(url.clone())
                .build()
                .with_context(|| format!("cannot set up OTLP export to {url}"))?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name(service.to_string())
                        .build(),
                )
                .build();
            let tracer = provider.tracer("platform");
            (
                Some(
                    tracing_opentelemetry::layer()
                        .with_tracer(tracer)
                        .with_filter(EnvFilter::new(&directives)),
                ),
                Some(provider),
            )
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(fmt_layer)
        .with(otel_layer)
        .try_init()
        .context("cannot install the log subscriber")?;
    Ok(TelemetryGuard { provider })
}

fn traces_url(endpoint: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    let has_path = trimmed
        .split_once("://")
        .map(|(_, rest)| rest.contains('/'))
        .unwrap_or(false);
    if has_path {
        trimmed.to_string()
    } else {
        format!("{trimmed}/v1/traces")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn stderr_leaves_out_request_lines_unless_asked() {
        use super::{ACCESS_LOG_TARGET, EnvFilter, stderr_directives};
        let off = stderr_directives("info", false);
        assert_eq!(off, format!("info,{ACCESS_LOG_TARGET}=warn"));
        assert!(EnvFilter::try_new(&off).is_ok());
        assert_eq!(stderr_directives("info", true), "info");
        // Operators who name the target themselves get what they asked for.
        let named = format!("warn,{ACCESS_LOG_TARGET}=info");
        assert_eq!(stderr_directives(&named, false), named);
    }

    #[test]
    fn traces_url_adds_the_signal_path() {
        assert_eq!(
            super::traces_url("http://c:4318"),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            super::traces_url("http://c:4318/"),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            super::traces_url("http://c:4318/custom"),
            "http://c:4318/custom"
        );
    }
}
