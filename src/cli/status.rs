//! `platform status [APP]`: what is live and how it is doing over the last five minutes
//! (`StatusService/GetStatus`).

use anyhow::{Context as _, bail};
use clap::Args;
use platform_proto::v1::{AppStatus, GetStatusRequest, GetStatusResponse, RuntimeStatus};

use super::{ConnArgs, format_time, print_json, server_and_token};

/// `platform status` flags.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One app in detail [default: a table of every app].
    pub app: Option<String>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Runs `platform status`.
pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let (server, token) = server_and_token(&args.conn)?;
    let base = server.trim_end_matches('/');
    let resp = reqwest::Client::new()
        .post(format!("{base}/platform.v1.StatusService/GetStatus"))
        .bearer_auth(&token)
        .json(&GetStatusRequest {
            app: args.app.clone().unwrap_or_default(),
        })
        .send()
        .await
        .with_context(|| format!("cannot reach the Platform API at {base}"))?;
    let status = resp.status();
    let text = resp.text().await.context("reading the answer")?;
    if !status.is_success() {
        let msg = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or(text);
        bail!("{msg}");
    }
    let r: GetStatusResponse =
        serde_json::from_str(&text).context("unexpected answer from the server")?;
    if args.conn.json {
        return print_json(&r);
    }
    if !r.traffic_available {
        println!("(this control plane hears from no runtime: no traffic figures)\n");
    }
    match args.app {
        Some(_) => {
            for a in &r.apps {
                detail(a);
            }
        }
        None => {
            table(&r.apps);
            println!();
            runtimes(&r.runtimes, r.revision);
        }
    }
    Ok(())
}

/// The runtimes heard from, flagging those that serve an older feed revision than control's.
fn runtimes(runtimes: &[RuntimeStatus], revision: u64) {
    if runtimes.is_empty() {
        println!("no runtime has reported in the last 35 s");
        return;
    }
    println!(
        "{:<32} {:<10} {:>9}  {:<21} LAST SEEN",
        "RUNTIME", "VERSION", "REVISION", "STARTED"
    );
    for rt in runtimes {
        let when = |secs: Option<i64>| secs.map(format_time).unwrap_or_else(|| "-".into());
        let lag = if rt.revision < revision {
            format!("  (behind: control is at {revision})")
        } else {
            String::new()
        };
        println!(
            "{:<32} {:<10} {:>9}  {:<21} {}{lag}",
            rt.name,
            rt.version,
            rt.revision,
            when(rt.start_time.as_ref().map(|t| t.seconds)),
            when(rt.last_seen_time.as_ref().map(|t| t.seconds))
        );
    }
}

fn release(a: &AppStatus) -> String {
    let Some(app) = &a.app else {
        return "-".into();
    };
    if app.live_release_number == 0 {
        return "-".into();
    }
    let mut s = format!("#{}", app.live_release_number);
    if let Some(split) = app.split.as_ref().filter(|s| s.weight > 0) {
        s = format!(
            "{s} {}% / #{} {}%",
            100 - split.weight,
            split.release_number,
            split.weight
        );
    }
    s
}

fn table(apps: &[AppStatus]) {
    if apps.is_empty() {
        println!(
            "no apps yet: platform init NAME, or platform deploy app.wasm --app NAME --route /path"
        );
        return;
    }
    println!(
        "{:<20} {:<20} {:>6} {:>6} {:>9} {:>9} {:>5}  LAST 5 MIN",
        "APP", "RELEASE", "REQS", "5XX%", "P50", "P99", "COLD"
    );
    for a in apps {
        let name = a.app.as_ref().map(|x| x.name.as_str()).unwrap_or("?");
        println!(
            "{:<20} {:<20} {:>6} {:>5.1}% {:>7.1}ms {:>7.1}ms {:>5}",
            name,
            release(a),
            a.requests,
            a.error_rate * 100.0,
            a.p50_ms,
            a.p99_ms,
            a.cold_starts
        );
    }
}

fn detail(a: &AppStatus) {
    let Some(app) = &a.app else { return };
    println!("{}", app.name);
    println!("  release     {}", release(a));
    let mut urls: Vec<&str> = app.routes.iter().map(|r| r.url.as_str()).collect();
    if !app.default_url.is_empty() {
        urls.insert(0, &app.default_url);
    }
    if urls.is_empty() {
        println!("  routes      none");
    }
    for (i, u) in urls.iter().enumerate() {
        println!("  {:<11} {u}", if i == 0 { "routes" } else { "" });
    }
    if app.dedicated {
        let st = app
            .dedicated_status
            .as_ref()
            .map(|s| {
                if s.ready {
                    format!("ready at {}", s.url)
                } else {
                    s.message.clone()
                }
            })
            .unwrap_or_else(|| "waiting for the control plane".into());
        println!("  dedicated   {st}");
    }
    println!(
        "  last 5 min  {} requests, {} 5xx ({:.1}%), p50 {:.1} ms, p99 {:.1} ms, {} cold starts",
        a.requests,
        a.errors,
        a.error_rate * 100.0,
        a.p50_ms,
        a.p99_ms,
        a.cold_starts
    );
    println!(
        "  last request {}",
        a.last_request_time
            .as_ref()
            .map(|t| format_time(t.seconds))
            .unwrap_or_else(|| "none in the last hour".into())
    );
}
