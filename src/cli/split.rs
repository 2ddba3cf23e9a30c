//! `platform split APP 90=#12 10=#13` and `platform split APP --canary 10%`: traffic
//! between two releases, through `SetTrafficSplit`.
//!
//! The API splits between the live release and one other. When neither release named is
//! live, the one with the larger share is made live first (a rollback), then the other gets
//! its share; `--canary N%` gives N% to a release (by default the newest ready one) and the
//! rest to the release live before it.

use anyhow::{Context as _, bail};
use clap::Args;
use platform_proto::v1::{
    GetAppRequest, ListReleasesRequest, Release, ReleaseState, RollbackReleaseRequest,
    SetTrafficSplitRequest,
};
use serde::Serialize;

use super::api::Api;
use super::{ConnArgs, connect, print_json};

/// `platform split` flags.
#[derive(Debug, Args)]
pub struct SplitArgs {
    /// App name.
    pub app: String,
    /// Two WEIGHT=RELEASE shares adding up to 100, e.g. `90=#12 10=#13` (a release by
    /// number, `#number`, or id).
    #[arg(conflicts_with_all = ["canary", "clear"])]
    pub shares: Vec<String>,
    /// Send this share (e.g. 10%) to --release, the rest to the release live before it.
    #[arg(long, value_name = "PERCENT")]
    pub canary: Option<String>,
    /// The canary release [default: the newest ready release].
    #[arg(long, requires = "canary")]
    pub release: Option<String>,
    /// End the split: all traffic to the live release.
    #[arg(long)]
    pub clear: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// How traffic is split, as printed.
#[derive(Debug, Serialize)]
pub struct SplitView {
    /// App name.
    pub app: String,
    /// (release number, percent), the live release first.
    pub shares: Vec<Share>,
}

/// One release's share.
#[derive(Debug, Serialize)]
pub struct Share {
    /// Release number.
    pub release: u32,
    /// Percent of requests.
    pub weight: u32,
    /// The live release (the other is the split).
    pub live: bool,
}

/// Runs `platform split`.
pub async fn run(args: SplitArgs) -> anyhow::Result<()> {
    let api = connect(&args.conn)?;
    let api = api.as_ref();
    let releases = api
        .list_releases(ListReleasesRequest {
            app: args.app.clone(),
        })
        .await?
        .releases;
    let live = releases
        .iter()
        .find(|r| r.live)
        .with_context(|| format!("app {:?} has no live release to split", args.app))?;
    if args.clear {
        set(api, &args.app, "", 0).await?;
    } else if let Some(c) = &args.canary {
        let weight = parse_weight(c.trim_end_matches('%'))?;
        let canary = match &args.release {
            Some(r) => find(&releases, r)?,
            None => releases
                .iter()
                .filter(|r| r.state == ReleaseState::Ready as i32)
                .max_by_key(|r| r.number)
                .context("no ready release")?,
        };
        if canary.live {
            // Just deployed: the previous live release takes the rest again.
            let r = api
                .rollback(RollbackReleaseRequest {
                    app: args.app.clone(),
                    release: String::new(),
                })
                .await?
                .release
                .context("empty answer")?;
            if r.id == canary.id {
                bail!("no earlier release to split with");
            }
        }
        set(api, &args.app, &canary.id, weight).await?;
    } else {
        let shares = args
            .shares
            .iter()
            .map(|s| {
                let (w, r) = s
                    .split_once('=')
                    .with_context(|| format!("{s:?}: write WEIGHT=RELEASE, e.g. 90=#12"))?;
                Ok((parse_weight(w.trim_end_matches('%'))?, find(&releases, r)?))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let [(wa, a), (wb, b)] = shares.as_slice() else {
            bail!(
                "give two shares, e.g. `platform split APP 90=#12 10=#13` (or --canary 10%, or --clear)"
            );
        };
        if wa + wb != 100 {
            bail!("the shares add up to {}%, not 100%", wa + wb);
        }
        if a.id == b.id {
            bail!("name two different releases");
        }
        let (stay, other, weight) = if a.id == live.id {
            (*a, *b, *wb)
        } else if b.id == live.id {
            (*b, *a, *wa)
        } else if wa >= wb {
            (*a, *b, *wb)
        } else {
            (*b, *a, *wa)
        };
        if !stay.live {
            api.rollback(RollbackReleaseRequest {
                app: args.app.clone(),
                release: stay.id.clone(),
            })
            .await?;
        }
        set(api, &args.app, &other.id, weight).await?;
    }
    let view = current(api, &args.app).await?;
    if args.conn.json {
        return print_json(&view);
    }
    let parts: Vec<String> = view
        .shares
        .iter()
        .map(|s| {
            format!(
                "{}% to #{}{}",
                s.weight,
                s.release,
                if s.live { " (live)" } else { "" }
            )
        })
        .collect();
    println!("{}: {}", view.app, parts.join(", "));
    Ok(())
}

async fn set(api: &dyn Api, app: &str, release: &str, weight: u32) -> anyhow::Result<()> {
    api.set_traffic_split(SetTrafficSplitRequest {
        app: app.to_string(),
        release: release.to_string(),
        weight,
    })
    .await?;
    Ok(())
}

fn parse_weight(w: &str) -> anyhow::Result<u32> {
    match w.trim().parse::<u32>() {
        Ok(n) if n <= 100 => Ok(n),
        _ => bail!("{w:?} is not a percentage (0 to 100)"),
    }
}

fn find<'a>(releases: &'a [Release], r: &str) -> anyhow::Result<&'a Release> {
    let r = r.trim();
    let number: Option<u32> = r.trim_start_matches('#').parse().ok();
    releases
        .iter()
        .find(|x| x.id == r || Some(x.number) == number)
        .with_context(|| format!("no release {r:?} (see `platform releases APP`)"))
}

/// The app's split as it stands.
pub async fn current(api: &dyn Api, app: &str) -> anyhow::Result<SplitView> {
    let a = api
        .get_app(GetAppRequest {
            app: app.to_string(),
        })
        .await?
        .app
        .context("empty answer")?;
    let releases = api
        .list_releases(ListReleasesRequest {
            app: app.to_string(),
        })
        .await?
        .releases;
    let number = |id: &str| releases.iter().find(|r| r.id == id).map(|r| r.number);
    let split = a
        .split
        .as_ref()
        .filter(|s| s.weight > 0)
        .and_then(|s| Some((number(&s.release_id)?, s.weight)));
    let mut shares = Vec::new();
    if let Some(live) = number(&a.live_release_id) {
        shares.push(Share {
            release: live,
            weight: 100 - split.map_or(0, |(_, w)| w),
            live: true,
        });
    }
    if let Some((n, w)) = split {
        shares.push(Share {
            release: n,
            weight: w,
            live: false,
        });
    }
    Ok(SplitView {
        app: a.name,
        shares,
    })
}
