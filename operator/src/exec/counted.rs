//! An executor that counts round trips: each command run on an open connection, and each
//! upload (one command with the content on stdin), is one. Connection setup is not counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::future::BoxFuture;

use super::{Cmd, ExecError, Executor, Output};

/// Wraps an executor and counts the round trips made through it.
pub struct Counted {
    inner: Arc<dyn Executor>,
    trips: AtomicUsize,
}

impl Counted {
    /// Counts from zero the round trips made through `inner`.
    pub fn new(inner: Arc<dyn Executor>) -> Self {
        Counted {
            inner,
            trips: AtomicUsize::new(0),
        }
    }

    /// Round trips so far.
    pub fn round_trips(&self) -> usize {
        self.trips.load(Ordering::Relaxed)
    }
}

impl Executor for Counted {
    fn host(&self) -> &str {
        self.inner.host()
    }

    fn run<'a>(&'a self, cmd: &'a Cmd) -> BoxFuture<'a, Result<Output, ExecError>> {
        self.trips.fetch_add(1, Ordering::Relaxed);
        self.inner.run(cmd)
    }

    fn upload<'a>(
        &'a self,
        path: &'a str,
        content: &'a [u8],
        mode: u32,
        owner: &'a str,
        group: &'a str,
    ) -> BoxFuture<'a, Result<(), ExecError>> {
        self.trips.fetch_add(1, Ordering::Relaxed);
        self.inner.upload(path, content, mode, owner, group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::FakeExecutor;

    #[tokio::test]
    async fn runs_and_uploads_count_one_each() {
        let fake = FakeExecutor::new("a");
        let c = Counted::new(Arc::new(fake.clone()));
        c.run(&Cmd::new("true")).await.unwrap();
        c.run_ok(&Cmd::new("true"), "step").await.unwrap();
        c.upload("/x", b"y", 0o600, "root", "root").await.unwrap();
        assert_eq!(c.round_trips(), 3);
        assert_eq!(fake.events().len(), 3);
    }
}
