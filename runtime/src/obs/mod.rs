//! Live telemetry for a cluster's dashboard: a runtime's log lines and traffic counts, sent
//! to the control plane over NATS core pub/sub.
//!
//! In one process (`platform up`) the dashboard reads [`crate::Runtime::logs`] and
//! [`crate::Runtime::traffic`] directly. In a cluster each runtime runs an
//! [`publish::ObsPublisher`] that batches both onto [`wire`]'s subjects, and the control
//! plane merges what every runtime sends (`platform_web::NatsObservability`). This is
//! telemetry, not data: a batch lost while NATS is away is gone, and serving never waits
//! for NATS.

pub mod publish;
pub mod wire;
