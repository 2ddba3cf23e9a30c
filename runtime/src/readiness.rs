//! Readiness beyond "routes are loaded": start-up work that must finish before `/readyz`
//! answers 200.
//!
//! A load balancer (Knative, Kubernetes) sends traffic once `/readyz` says ready. Routes
//! alone are not enough: a route whose module is still being compiled or fetched answers
//! slowly or not at all. Whoever starts such work takes a [`ReadinessHold`] before the
//! admin listener can be asked, and drops it when the work is done (or given up on); the
//! runtime is ready when its routes are loaded and no hold is left.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts the start-up work still outstanding.
#[derive(Debug, Default)]
pub struct ReadinessGate {
    pending: Arc<AtomicUsize>,
}

impl ReadinessGate {
    /// Holds readiness back until the returned guard is dropped.
    pub fn hold(&self, what: &'static str) -> ReadinessHold {
        self.pending.fetch_add(1, Ordering::AcqRel);
        tracing::debug!(what, "readiness held");
        ReadinessHold {
            pending: self.pending.clone(),
            what,
        }
    }

    /// True when no hold is outstanding.
    pub fn is_clear(&self) -> bool {
        self.pending.load(Ordering::Acquire) == 0
    }
}

/// Outstanding start-up work; readiness is released when this is dropped.
#[derive(Debug)]
#[must_use = "readiness is released as soon as the hold is dropped"]
pub struct ReadinessHold {
    pending: Arc<AtomicUsize>,
    what: &'static str,
}

impl Drop for ReadinessHold {
    fn drop(&mut self) {
        self.pending.fetch_sub(1, Ordering::AcqRel);
        tracing::debug!(what = self.what, "readiness hold released");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clear_only_when_every_hold_is_dropped() {
        let gate = ReadinessGate::default();
        assert!(gate.is_clear());
        let a = gate.hold("a");
        let b = gate.hold("b");
        assert!(!gate.is_clear());
        drop(a);
        assert!(!gate.is_clear());
        drop(b);
        assert!(gate.is_clear());
    }
}
