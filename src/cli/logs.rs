//! `platform logs [APP] [-f]`: recent log lines, then (with `-f`) new ones, over the API's
//! `LogService/TailLogs` server stream (Connect, enveloped JSON).

use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use futures::StreamExt as _;
use platform_proto::v1::{TailLogsRequest, TailLogsResponse};

use super::{ConnArgs, server_and_token};

/// `platform logs` flags.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// App name [default: every app of the tenant].
    pub app: Option<String>,
    /// Keep following new lines (Ctrl-C stops).
    #[arg(short, long)]
    pub follow: bool,
    /// Only request lines of this class: 2xx, 3xx, 4xx, 5xx or errors (4xx and 5xx).
    #[arg(long, value_parser = ["2xx", "3xx", "4xx", "5xx", "errors"])]
    pub status: Option<String>,
    /// Only lines of the last while, e.g. 10m.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,
    /// At most this many recent lines.
    #[arg(long, default_value_t = 100)]
    pub lines: u32,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Runs `platform logs`.
pub async fn run(args: LogsArgs) -> anyhow::Result<()> {
    let (server, token) = server_and_token(&args.conn)?;
    let req = TailLogsRequest {
        app: args.app.clone().unwrap_or_default(),
        follow: args.follow,
        status: args.status.clone().unwrap_or_default(),
        since_seconds: args
            .since
            .map_or(0, |d| u32::try_from(d.as_secs().max(1)).unwrap_or(u32::MAX)),
        limit: args.lines,
    };
    let body = serde_json::to_vec(&req)?;
    let mut enveloped = vec![0u8];
    enveloped.extend_from_slice(&u32::try_from(body.len())?.to_be_bytes());
    enveloped.extend_from_slice(&body);
    let base = server.trim_end_matches('/');
    let resp = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()?
        .post(format!("{base}/platform.v1.LogService/TailLogs"))
        .bearer_auth(&token)
        .header("content-type", "application/connect+json")
        .body(enveloped)
        .send()
        .await
        .with_context(|| format!("cannot reach the Platform API at {base}"))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let msg = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or(text);
        bail!("{msg} (HTTP {status})");
    }
    let mut stream = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        while let Some((flags, msg)) = take_envelope(&mut buf) {
            if flags & 0x02 != 0 {
                let end: serde_json::Value = serde_json::from_slice(&msg).unwrap_or_default();
                if let Some(m) = end["error"]["message"].as_str() {
                    bail!("{m}");
                }
                return Ok(());
            }
            let r: TailLogsResponse =
                serde_json::from_slice(&msg).context("unexpected message from the server")?;
            if let Some(e) = r.entry {
                print_entry(&e, args.conn.json, args.app.is_none())?;
            }
        }
        match stream.next().await {
            Some(chunk) => buf.extend_from_slice(&chunk.context("reading the log stream")?),
            None => bail!("the log stream ended early"),
        }
    }
}

/// Takes one whole envelope off the front of `buf`.
fn take_envelope(buf: &mut Vec<u8>) -> Option<(u8, Vec<u8>)> {
    if buf.len() < 5 {
        return None;
    }
    let n = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if buf.len() < 5 + n {
        return None;
    }
    let flags = buf[0];
    let msg = buf[5..5 + n].to_vec();
    buf.drain(..5 + n);
    Some((flags, msg))
}

fn print_entry(e: &platform_proto::v1::LogEntry, json: bool, show_app: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(e)?);
        return Ok(());
    }
    let time = e
        .time
        .as_ref()
        .map(|t| {
            humantime::format_rfc3339_millis(
                std::time::UNIX_EPOCH
                    + Duration::from_secs(t.seconds.max(0) as u64)
                    + Duration::from_nanos(t.nanos.max(0) as u64),
            )
            .to_string()
        })
        .unwrap_or_default();
    let id = &e.request_id[..e.request_id.len().min(12)];
    if show_app {
        println!("{time} {:<16} {:<7} {id:<12} {}", e.app, e.stream, e.line);
    } else {
        println!("{time} {:<7} {id:<12} {}", e.stream, e.line);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn envelopes_are_taken_whole() {
        let mut buf = vec![0, 0, 0, 0, 2, b'{', b'}', 2, 0, 0];
        assert_eq!(take_envelope(&mut buf), Some((0, b"{}".to_vec())));
        assert_eq!(take_envelope(&mut buf), None);
        buf.extend_from_slice(&[0, 2, b'{', b'}']);
        assert_eq!(take_envelope(&mut buf), Some((2, b"{}".to_vec())));
        assert!(buf.is_empty());
    }
}
