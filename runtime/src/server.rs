//! The traffic listener: HTTP/1.1 and h2c over hyper, with graceful shutdown.
//!
//! On shutdown the listener stops accepting, idle keep-alive connections are closed, and
//! requests in flight run to completion (up to a grace period) before [`serve`] returns.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::host::{ConnInfo, ListenerRole, Runtime};

/// Serves tenants' traffic on `listener` until `shutdown` resolves, then drains for up to
/// `grace`.
pub async fn serve(
    listener: TcpListener,
    runtime: Arc<Runtime>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()> {
    serve_as(ListenerRole::Traffic, listener, runtime, shutdown, grace).await
}

/// Serves CloudEvents (`POST /.platform/events`) on an internal `listener`, for the event
/// broker only.
pub async fn serve_events(
    listener: TcpListener,
    runtime: Arc<Runtime>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()> {
    serve_as(ListenerRole::Events, listener, runtime, shutdown, grace).await
}

async fn serve_as(
    role: ListenerRole,
    listener: TcpListener,
    runtime: Arc<Runtime>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Slow clients: headers must arrive in time (bodies have their own idle timeout), and
    // HTTP/2 connections that stop answering pings are closed.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(runtime.header_read_timeout());
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, remote) = match accepted {
                    Ok(v) => v,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let rt = runtime.clone();
                let conn_info = ConnInfo { remote, local, role };
                let service = service_fn(move |req| {
                    let rt = rt.clone();
                    async move { Ok::<_, std::convert::Infallible>(rt.handle(req, conn_info).await) }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("traffic listener closed; draining requests in flight");
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_s = grace.as_secs_f64(),
            "requests still running after the grace period; stopping anyway"
        );
    }
    Ok(())
}
