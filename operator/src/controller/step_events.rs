//! A converge's progress for the operator: the conditions' live message and plan (through
//! [`Live`]) and one Event per planned topology step as it starts.

use kube::runtime::events::EventType;

use super::Context;
use super::converge_task::Live;
use super::reconcile::publish;
use crate::api::PostgresCluster;
use crate::engine;

/// Forwards a converge's progress to its [`Live`], and each planned step it starts to
/// [`publish_steps`].
pub struct StepEvents<'a> {
    /// The converge's live state.
    pub live: &'a Live,
    /// Where started steps go.
    pub tx: tokio::sync::mpsc::UnboundedSender<String>,
}

impl engine::Progress for StepEvents<'_> {
    fn phase(&self, name: &str) {
        self.live.phase(name);
        if name.starts_with("step ") {
            let _ = self.tx.send(name.to_string());
        }
    }
    fn step(&self, host: &str, step: &str) {
        self.live.step(host, step);
    }
    fn plan(&self, steps: &[crate::plan::Step]) {
        engine::Progress::plan(self.live, steps);
    }
}

/// One Event per planned step, as the converge starts it (until the converge ends).
pub async fn publish_steps(
    ctx: &Context,
    pgc: &PostgresCluster,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    while let Some(step) = rx.recv().await {
        publish(ctx, pgc, EventType::Normal, "TopologyStep", &step).await;
    }
}
