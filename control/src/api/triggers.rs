//! Events in: which CloudEvent types and NATS subjects invoke an app, and dedicated mode.
//!
//! A trigger value (an event type, or a subject) belongs to one app platform-wide, like a
//! route: an event must have exactly one destination, and no tenant may receive another
//! tenant's messages. Changing triggers or dedicated mode changes serving, so it goes
//! through the feed like a route change.

use std::collections::HashSet;
use std::sync::Arc;

use platform_proto::v1::{
    EventTrigger, SetAppDedicatedRequest, SetAppDedicatedResponse, SetAppTriggersRequest,
    SetAppTriggersResponse, SubjectTrigger,
};
use sqlx::Row;

use super::apps::app_message;
use super::resolve_app;
use crate::Control;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::feed::commit_app_change;
use crate::store::{is_unique_violation, new_id, now_ms};

/// The `kind` column of CloudEvent-type triggers.
pub const KIND_EVENT: &str = "event";
/// The `kind` column of NATS-subject triggers.
pub const KIND_SUBJECT: &str = "subject";

/// Checks and normalises a CloudEvents `type` attribute.
pub fn check_event_type(t: &str) -> Result<String, String> {
    let t = t.trim();
    if t.is_empty() {
        return Err(
            "the event type is empty: give the CloudEvents type, e.g. com.example.order.created"
                .into(),
        );
    }
    if t.len() > 256 {
        return Err(format!("event type {t:?} is longer than 256 characters"));
    }
    if !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "event type {t:?} may only hold printable ASCII without spaces"
        ));
    }
    Ok(t.to_string())
}

/// Checks a NATS subject an app may subscribe to: dot-separated tokens of letters,
/// digits, `-` and `_`, where `*` stands for one token and a final `>` for the rest. The
/// first token must be literal (so no app subscribes to everything), and `platform.`,
/// `_INBOX.` and `$...` subjects are the system's own.
pub fn check_subject(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("the subject is empty: give a NATS subject such as orders.created".into());
    }
    if s.len() > 256 {
        return Err(format!("subject {s:?} is longer than 256 characters"));
    }
    let tokens: Vec<&str> = s.split('.').collect();
    for (i, tok) in tokens.iter().enumerate() {
        let ok = match *tok {
            "" => false,
            "*" => i > 0,
            ">" => i > 0 && i == tokens.len() - 1,
            t => t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        };
        if !ok {
            return Err(format!(
                "subject {s:?} is not valid: use dot-separated tokens of letters, digits, '-' and '_'; '*' and a final '>' may follow a literal first token"
            ));
        }
    }
    let first = tokens.first().copied().unwrap_or_default();
    if first == "platform" || first == "_INBOX" || first.starts_with('$') {
        return Err(format!(
            "subject {s:?} is reserved: platform.*, _INBOX.* and $* subjects are the system's own"
        ));
    }
    Ok(s.to_string())
}

/// Whether some subject matches both NATS subject patterns (`*` is one token, a final `>`
/// one or more): tenants' subject triggers must not overlap, or one tenant would receive
/// (part of) another's messages, e.g. `orders.>` against `orders.created`.
pub fn subjects_overlap(a: &str, b: &str) -> bool {
    let a: Vec<&str> = a.split('.').collect();
    let b: Vec<&str> = b.split('.').collect();
    let mut i = 0;
    loop {
        match (a.get(i), b.get(i)) {
            (None, None) => return true,
            // `>` needs at least one token where it stands.
            (Some(&">"), Some(_)) | (Some(_), Some(&">")) => return true,
            (Some(x), Some(y)) => {
                if *x != "*" && *y != "*" && x != y {
                    return false;
                }
            }
            _ => return false,
        }
        i += 1;
    }
}

/// Checks the request path a trigger posts to ("/" when empty).
pub fn check_trigger_path(p: &str) -> Result<String, String> {
    let p = p.trim();
    if p.is_empty() {
        return Ok("/".into());
    }
    if !p.starts_with('/') {
        return Err(format!("path {p:?} must start with '/'"));
    }
    if p.bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b == b'?' || b == b'#')
        || p.split('/').any(|seg| seg == "." || seg == "..")
    {
        return Err(format!(
            "path {p:?} holds characters or segments not allowed"
        ));
    }
    Ok(p.to_string())
}

/// Replaces the app's triggers; values another app holds are refused with its name.
pub async fn set_app_triggers(
    ctl: Arc<Control>,
    caller: Caller,
    req: SetAppTriggersRequest,
) -> Result<SetAppTriggersResponse, ApiError> {
    let mut wanted: Vec<(&str, String, String)> = Vec::new();
    let mut seen = HashSet::new();
    for t in &req.event_triggers {
        let v = check_event_type(&t.event_type).map_err(|m| ApiError::invalid("event_type", m))?;
        let p = check_trigger_path(&t.path).map_err(|m| ApiError::invalid("path", m))?;
        if !seen.insert((KIND_EVENT, v.clone())) {
            return Err(ApiError::invalid(
                "event_type",
                format!("event type {v:?} is listed twice"),
            ));
        }
        wanted.push((KIND_EVENT, v, p));
    }
    for t in &req.subject_triggers {
        let v = check_subject(&t.subject).map_err(|m| ApiError::invalid("subject", m))?;
        let p = check_trigger_path(&t.path).map_err(|m| ApiError::invalid("path", m))?;
        if !seen.insert((KIND_SUBJECT, v.clone())) {
            return Err(ApiError::invalid(
                "subject",
                format!("subject {v:?} is listed twice"),
            ));
        }
        wanted.push((KIND_SUBJECT, v, p));
    }

    let mut tx = ctl.store.begin().await?;
    // The overlap check and the insert see one state: no concurrent trigger change between.
    ctl.store.lock_serving(&mut tx).await?;
    let app = resolve_app(&mut tx, &caller, &req.app).await?;
    if wanted.iter().any(|(kind, _, _)| *kind == KIND_SUBJECT) {
        let others = sqlx::query(
            "SELECT t.value FROM triggers t JOIN apps a ON a.id = t.app_id WHERE t.kind = $1 AND a.tenant <> $2",
        )
        .bind(KIND_SUBJECT)
        .bind(&app.tenant)
        .fetch_all(&mut *tx)
        .await?;
        for row in others {
            let theirs: String = row.try_get("value")?;
            if let Some((_, mine, _)) = wanted
                .iter()
                .find(|(kind, v, _)| *kind == KIND_SUBJECT && subjects_overlap(v, &theirs))
            {
                return Err(ApiError::exists(format!(
                    "subject {mine:?} overlaps a subject another tenant's app subscribes to: pick subjects under a first token of your own"
                ))
                .on("subject"));
            }
        }
    }
    for (kind, value, _) in &wanted {
        let holder = sqlx::query(
            "SELECT a.name, a.tenant FROM triggers t JOIN apps a ON a.id = t.app_id WHERE t.kind = $1 AND t.value = $2 AND t.app_id <> $3",
        )
        .bind(*kind)
        .bind(value)
        .bind(&app.id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = holder {
            let name: String = row.try_get("name")?;
            let tenant: String = row.try_get("tenant")?;
            let who = if tenant == caller.tenant {
                format!("app {name:?}")
            } else {
                "another tenant's app".to_string()
            };
            let (field, what) = if *kind == KIND_EVENT {
                ("event_type", "event type")
            } else {
                ("subject", "subject")
            };
            return Err(
                ApiError::exists(format!("{what} {value:?} is already taken by {who}")).on(field),
            );
        }
    }
    sqlx::query("DELETE FROM triggers WHERE app_id = $1")
        .bind(&app.id)
        .execute(&mut *tx)
        .await?;
    let now = now_ms();
    for (kind, value, path) in &wanted {
        let res = sqlx::query(
            "INSERT INTO triggers (id, app_id, kind, value, path, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(new_id())
        .bind(&app.id)
        .bind(*kind)
        .bind(value)
        .bind(path)
        .bind(now)
        .execute(&mut *tx)
        .await;
        match res {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(ApiError::exists(format!(
                    "{value:?} was just taken by another app"
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
    commit_app_change(&ctl, tx, &app.id).await?;
    let mut conn = ctl.store.pool().acquire().await?;
    let app = resolve_app(&mut conn, &caller, &app.id).await?;
    Ok(SetAppTriggersResponse {
        app: Some(app_message(&ctl, &mut conn, &app).await?),
    })
}

/// Marks the app dedicated (its own Knative Service) or shared again.
pub async fn set_app_dedicated(
    ctl: Arc<Control>,
    caller: Caller,
    req: SetAppDedicatedRequest,
) -> Result<SetAppDedicatedResponse, ApiError> {
    let mut tx = ctl.store.begin().await?;
    let app = resolve_app(&mut tx, &caller, &req.app).await?;
    sqlx::query(
        "UPDATE apps SET dedicated = $1, dedicated_ready = 0, dedicated_url = NULL, dedicated_message = $2, dedicated_updated_at = $3 WHERE id = $4",
    )
    .bind(i64::from(req.dedicated))
    .bind(if req.dedicated {
        Some("waiting for the control plane to create the Knative Service")
    } else {
        None
    })
    .bind(now_ms())
    .bind(&app.id)
    .execute(&mut *tx)
    .await?;
    commit_app_change(&ctl, tx, &app.id).await?;
    let mut conn = ctl.store.pool().acquire().await?;
    let app = resolve_app(&mut conn, &caller, &app.id).await?;
    Ok(SetAppDedicatedResponse {
        app: Some(app_message(&ctl, &mut conn, &app).await?),
    })
}

/// The app's triggers, for [`app_message`] and the feed.
pub async fn app_triggers(
    conn: &mut sqlx::AnyConnection,
    app_id: &str,
) -> Result<(Vec<EventTrigger>, Vec<SubjectTrigger>), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT kind, value, path FROM triggers WHERE app_id = $1 ORDER BY kind, value",
    )
    .bind(app_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut events = Vec::new();
    let mut subjects = Vec::new();
    for r in rows {
        let kind: String = r.try_get("kind")?;
        let value: String = r.try_get("value")?;
        let path: String = r.try_get("path")?;
        if kind == KIND_EVENT {
            events.push(EventTrigger {
                event_type: value,
                path,
            });
        } else {
            subjects.push(SubjectTrigger {
                subject: value,
                path,
            });
        }
    }
    Ok((events, subjects))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_checked() {
        assert_eq!(check_subject(" orders.created ").unwrap(), "orders.created");
        assert!(check_subject("orders.*.eu").is_ok());
        assert!(check_subject("orders.>").is_ok());
        for bad in [
            "",
            ">",
            "*",
            "*.x",
            "a.>.b",
            "a..b",
            "a b",
            "platform.feed.v1",
            "$JS.API",
            "_INBOX.x",
            "a.b>",
        ] {
            assert!(check_subject(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn subject_overlap_follows_nats_wildcards() {
        for (a, b) in [
            ("orders.created", "orders.created"),
            ("orders.>", "orders.created"),
            ("orders.>", "orders.eu.created"),
            ("orders.*", "orders.created"),
            ("orders.*.eu", "orders.created.*"),
            ("orders.>", "orders.*"),
            ("a.*.c", "a.>"),
        ] {
            assert!(subjects_overlap(a, b), "{a} and {b} overlap");
            assert!(subjects_overlap(b, a), "{b} and {a} overlap");
        }
        for (a, b) in [
            ("orders.created", "orders.deleted"),
            ("orders.>", "orders"),
            ("orders.*", "orders"),
            ("orders.*", "orders.a.b"),
            ("orders.*.eu", "orders.x.us"),
            ("orders.>", "invoices.>"),
            ("ordersx.>", "orders.a"),
        ] {
            assert!(!subjects_overlap(a, b), "{a} and {b} are disjoint");
            assert!(!subjects_overlap(b, a), "{b} and {a} are disjoint");
        }
    }

    #[test]
    fn event_types_and_paths_are_checked() {
        assert!(check_event_type("com.example.order.created").is_ok());
        assert!(check_event_type("has space").is_err());
        assert!(check_event_type("").is_err());
        assert_eq!(check_trigger_path("").unwrap(), "/");
        assert!(check_trigger_path("/events/in").is_ok());
        assert!(check_trigger_path("events").is_err());
        assert!(check_trigger_path("/a/../b").is_err());
    }
}
