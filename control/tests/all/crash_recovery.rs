//! What a crashed (`kill -9`ed) control plane or worker leaves behind is picked up again:
//! a dead worker's compile claim is taken over within the lease, not after minutes, and
//! upload files staged by a killed process are removed when the control plane starts.

use std::time::{SystemTime, UNIX_EPOCH};

use platform_control::worker::STALE_CLAIM_MS;
use serde_json::json;

use crate::support::{Db, Harness, both_databases, wagi};

both_databases!(
    a_dead_workers_compile_is_taken_over,
    a_live_workers_compile_is_left_alone,
    leftover_staging_is_removed_at_start
);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Uploads a module and marks its compile job as claimed by a worker at `claimed_at`.
async fn claimed_job(h: &Harness, claimed_at: i64) -> String {
    let (s, m) = h.upload(&h.admin, wagi("crash")).await;
    assert_eq!(s, 200, "{m}");
    let digest = m["digest"].as_str().unwrap().to_string();
    sqlx::query("UPDATE artifacts SET state = 'compiling', claimed_at = $1 WHERE digest = $2")
        .bind(claimed_at)
        .bind(&digest)
        .execute(h.ctl.store.pool())
        .await
        .unwrap();
    digest
}

async fn compile_state(h: &Harness, digest: &str) -> String {
    let m = h
        .ok(
            &h.admin,
            "ModuleService/GetModule",
            json!({ "digest": digest }),
        )
        .await;
    m["module"]["compileState"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

// A dead worker's claim must expire within seconds (checked when this test compiles).
const _: () = assert!(STALE_CLAIM_MS < 20_000);

/// A worker `kill -9`ed 20 s into a compile: the job was stuck for ten minutes (the old
/// claim timeout); now the next worker takes it over once the lease ran out.
async fn a_dead_workers_compile_is_taken_over(db: Db) {
    let h = Harness::new(db).await;
    let digest = claimed_job(&h, now_ms() - 20_000).await;
    let ran = platform_control::worker::run_one(&h.ctl, &h.engine)
        .await
        .unwrap();
    assert!(ran, "the abandoned compile job was not taken over");
    assert_eq!(compile_state(&h, &digest).await, "COMPILE_STATE_READY");
}

/// A claim renewed just now belongs to a worker still compiling: nobody takes it.
async fn a_live_workers_compile_is_left_alone(db: Db) {
    let h = Harness::new(db).await;
    let digest = claimed_job(&h, now_ms()).await;
    let ran = platform_control::worker::run_one(&h.ctl, &h.engine)
        .await
        .unwrap();
    assert!(!ran, "a live worker's claim was taken");
    assert_eq!(compile_state(&h, &digest).await, "COMPILE_STATE_PENDING");
}

/// A control plane killed mid-upload leaves its staging file (and a worker its compile
/// directory); the next process start removes them, and uploads stage there again.
async fn leftover_staging_is_removed_at_start(db: Db) {
    let h = Harness::new(db).await;
    let staging = h.ctl.config.staging_dir.clone();
    std::fs::write(staging.join(".tmpKILLED"), b"half an upload").unwrap();
    std::fs::create_dir_all(staging.join(".tmpCOMPILE")).unwrap();
    std::fs::write(staging.join(".tmpCOMPILE/module.wasm"), b"x").unwrap();
    platform_control::clear_staging(&staging);
    let left: Vec<_> = std::fs::read_dir(&staging)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "staged files survived a restart: {left:?}");
    let (s, m) = h.upload(&h.admin, wagi("after")).await;
    assert_eq!(s, 200, "{m}");
}
