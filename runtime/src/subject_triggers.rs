//! NATS subjects that invoke apps (cluster mode): each message on a subject an app
//! subscribed to becomes a POST to the app's trigger path; when the message has a reply
//! subject, the response goes back there.
//!
//! Subscriptions follow the route table: after every replacement the set of (subject, app)
//! pairs is compared with what is subscribed, and only the difference changes. Each app
//! subscribes in a queue group of its own, so with many runtimes every message invokes the
//! app once, while two apps on one subject each get it.
//!
//! The request the guest sees: method POST, the payload as body, NATS headers as HTTP
//! headers, `Nats-Subject` with the subject the message came on, `Content-Type` from the
//! message or `application/octet-stream`. The reply carries the response body, with the
//! status in a `Status` header and the request id in `X-Request-Id`. Replies go only to
//! `_INBOX.>` subjects ([`is_reply_subject`]): a sender cannot make a runtime publish a
//! guest's answer on a platform subject or another tenant's.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt as _;
use http::{HeaderName, HeaderValue, Method, Request, header};
use http_body_util::BodyExt;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::host::{ConnInfo, REQUEST_ID, Runtime};
use crate::route_table::{RouteTable, TriggerTarget};

/// Most messages being handled at once per subscription; NATS buffers the rest.
const MAX_IN_FLIGHT: usize = 64;

/// Header naming the subject a message arrived on.
pub const SUBJECT_HEADER: &str = "nats-subject";

/// What one subscription is: a subject, and the queue group of the app taking it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SubscriptionKey {
    subject: String,
    queue: String,
}

/// The queue group of an app: one per tenant and app.
fn queue_group(trigger: &TriggerTarget) -> String {
    let tenant = trigger
        .target
        .releases
        .first()
        .map(|(_, s)| s.tenant.as_str())
        .unwrap_or("default");
    format!("platform-app.{tenant}.{}", trigger.target.app)
}

fn wanted(table: &RouteTable) -> HashMap<SubscriptionKey, String> {
    table
        .subjects()
        .iter()
        .map(|(subject, t)| {
            (
                SubscriptionKey {
                    subject: subject.clone(),
                    queue: queue_group(t),
                },
                t.path.clone(),
            )
        })
        .collect()
}

/// Connects to NATS for [`follow`]; `options` carry the runtime role's credentials.
pub async fn connect(
    url: &str,
    options: async_nats::ConnectOptions,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    options
        .name("platform-runtime-triggers")
        .retry_on_initial_connect()
        .connect(url)
        .await
}

/// Follows the runtime's route table and keeps one NATS subscription per subject trigger,
/// until `shutdown` resolves.
pub async fn follow(
    rt: Arc<Runtime>,
    client: async_nats::Client,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut changes = rt.routes.changes();
    let mut live: HashMap<SubscriptionKey, JoinHandle<()>> = HashMap::new();
    tokio::pin!(shutdown);
    loop {
        let want = wanted(&rt.routes.load());
        live.retain(|key, task| {
            let keep = want.contains_key(key) && !task.is_finished();
            if !keep {
                task.abort();
                tracing::info!(subject = %key.subject, queue = %key.queue, "unsubscribed");
            }
            keep
        });
        for key in want.keys() {
            if live.contains_key(key) {
                continue;
            }
            match client
                .queue_subscribe(key.subject.clone(), key.queue.clone())
                .await
            {
                Ok(sub) => {
                    tracing::info!(subject = %key.subject, queue = %key.queue, "subscribed");
                    let task = tokio::spawn(serve_subscription(
                        rt.clone(),
                        client.clone(),
                        key.clone(),
                        sub,
                    ));
                    live.insert(key.clone(), task);
                }
                Err(e) => {
                    tracing::warn!(subject = %key.subject, error = %e, "cannot subscribe; retrying on the next change");
                }
            }
        }
        // Let the server know of the subscriptions before anyone relies on them.
        let _ = client.flush().await;
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { break },
            () = &mut shutdown => break,
            // Retry failed subscriptions now and then.
            () = tokio::time::sleep(std::time::Duration::from_secs(30)) => {}
        }
    }
    for (_, task) in live {
        task.abort();
    }
}

async fn serve_subscription(
    rt: Arc<Runtime>,
    client: async_nats::Client,
    key: SubscriptionKey,
    mut sub: async_nats::Subscriber,
) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(msg) = sub.next().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        // The target is looked up per message: a new release goes live without a new
        // subscription.
        let table = rt.routes.load();
        let Some(trigger) = table
            .subjects()
            .iter()
            .find(|(s, t)| *s == key.subject && queue_group(t) == key.queue)
            .map(|(_, t)| t.clone())
        else {
            continue;
        };
        let rt = rt.clone();
        let client = client.clone();
        tokio::spawn(async move {
            deliver(&rt, &client, msg, &trigger).await;
            drop(permit);
        });
    }
}

/// Runs the app for one message and answers its reply subject, if any.
async fn deliver(
    rt: &Runtime,
    client: &async_nats::Client,
    msg: async_nats::Message,
    trigger: &TriggerTarget,
) {
    let request_id = uuid::Uuid::now_v7().simple().to_string();
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(trigger.path.as_str());
    if let Some(h) = builder.headers_mut() {
        if let Some(nats) = &msg.headers {
            for (name, values) in nats.iter() {
                let Ok(name) = HeaderName::from_bytes(AsRef::<str>::as_ref(name).as_bytes()) else {
                    continue;
                };
                if name == header::CONTENT_LENGTH || name == header::HOST {
                    continue;
                }
                for v in values {
                    if let Ok(v) = HeaderValue::from_str(v.as_str()) {
                        h.append(name.clone(), v);
                    }
                }
            }
        }
        if let Ok(v) = HeaderValue::from_str(msg.subject.as_str()) {
            h.insert(SUBJECT_HEADER, v);
        }
        if !h.contains_key(header::CONTENT_TYPE) {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
        }
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(msg.payload.len()));
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            h.insert(REQUEST_ID, v);
        }
    }
    let Ok(req) = builder.body(crate::host::full(msg.payload.clone())) else {
        tracing::warn!(path = %trigger.path, "bad trigger path");
        return;
    };
    let conn = ConnInfo {
        remote: SocketAddr::from(([0, 0, 0, 0], 0)),
        local: SocketAddr::from(([0, 0, 0, 0], 0)),
        role: crate::host::ListenerRole::Events,
    };
    let resp = rt
        .dispatch_built(
            req,
            conn,
            trigger.route_match(),
            request_id.clone(),
            Instant::now(),
        )
        .await;
    let reply = match msg.reply {
        Some(r) if is_reply_subject(&r) => r,
        other => {
            if let Some(r) = other {
                // A sender chose a reply subject that is not an inbox (perhaps a platform
                // subject or another app's trigger): the guest's answer is not published
                // there, whatever the sender may do with NATS itself.
                tracing::warn!(request_id, reply = %r, "reply subject is not under _INBOX.; the reply is dropped");
            }
            // Nobody waits for an answer; still read the body so streaming guests finish.
            let _ = collect_within(resp.into_body(), usize::MAX).await;
            return;
        }
    };
    let status = resp.status();
    let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
    let max = client.server_info().max_payload.saturating_sub(4096).max(1);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("X-Request-Id", request_id.as_str());
    let body = match collect_within(resp.into_body(), max).await {
        Some(b) => {
            headers.insert("Status", status.as_u16().to_string().as_str());
            if let Some(ct) = content_type.as_ref().and_then(|v| v.to_str().ok()) {
                headers.insert("Content-Type", ct);
            }
            b
        }
        None => {
            tracing::warn!(request_id, "reply too large for NATS or unreadable");
            headers.insert("Status", "502");
            Bytes::from(format!(
                "the response could not be sent as a NATS reply (over {max} bytes, or failed)\n"
            ))
        }
    };
    if let Err(e) = client.publish_with_headers(reply, headers, body).await {
        tracing::warn!(request_id, error = %e, "cannot publish the reply");
    }
}

/// Whether a reply may go to `subject`: only request-reply inboxes (`_INBOX.>`), never a
/// subject that means something to the platform or to another app.
pub fn is_reply_subject(subject: &str) -> bool {
    subject.strip_prefix("_INBOX.").is_some_and(|rest| {
        !rest.is_empty()
            && !rest
                .split('.')
                .any(|t| t.is_empty() || t == "*" || t == ">")
    })
}

/// The whole body, or `None` when it is over `max` bytes or fails.
async fn collect_within(mut body: crate::host::ResponseBody, max: usize) -> Option<Bytes> {
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return None };
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > max {
                return None;
            }
            out.extend_from_slice(&data);
        }
    }
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::is_reply_subject;

    #[test]
    fn replies_go_only_to_inboxes() {
        assert!(is_reply_subject("_INBOX.abc"));
        assert!(is_reply_subject("_INBOX.abc.def"));
        for bad in [
            "platform.feed.v1",
            "orders.created",
            "_INBOX",
            "_INBOX.",
            "_INBOX.>",
            "_INBOX.*",
            "_INBOX..x",
            "$JS.API.STREAM.DELETE.x",
            "_inbox.abc",
        ] {
            assert!(!is_reply_subject(bad), "{bad:?} accepted");
        }
    }
}
