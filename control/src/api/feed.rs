//! `FeedService`: the serving snapshot for runtimes, and installation facts.

use std::sync::Arc;

use platform_proto::v1::{
    GetInfoRequest, GetInfoResponse, GetSnapshotRequest, GetSnapshotResponse,
};

use crate::Control;
use crate::auth::Caller;
use crate::error::ApiError;

/// Everything runtimes must serve (admin and runtime tokens only: it spans tenants).
pub async fn get_snapshot(
    ctl: Arc<Control>,
    caller: Caller,
    _req: GetSnapshotRequest,
) -> Result<GetSnapshotResponse, ApiError> {
    caller.require_feed_reader("reading the serving feed")?;
    Ok(GetSnapshotResponse {
        snapshot: Some(crate::feed::snapshot(&ctl).await?),
    })
}

/// The public URL, version and engine fingerprint.
pub async fn get_info(
    ctl: Arc<Control>,
    _caller: Caller,
    _req: GetInfoRequest,
) -> Result<GetInfoResponse, ApiError> {
    Ok(GetInfoResponse {
        public_url: ctl.config.public_url.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        engine: ctl.config.engine.as_str().to_string(),
    })
}
