//! How pgmetal talks to hosts: the `Executor` trait, commands, and the SSH and fake executors.
//!
//! Every command is one shell string in which every word is quoted ([`Cmd`]); secrets travel
//! on stdin only. The engine holds one `Arc<dyn Executor>` per host.

mod cmd;
mod connect;
mod counted;
mod error;
pub mod fake;
mod known_hosts;
pub mod ssh;

pub use cmd::{Cmd, DEFAULT_TIMEOUT, INSTALL_TIMEOUT, Output, quote, upload_cmd};
pub use connect::{SshConfig, SshConfigError};
pub use counted::Counted;
pub use error::ExecError;
pub use fake::FakeExecutor;
pub use known_hosts::{KnownHosts, KnownHostsFile, Verdict, fingerprint};
pub use ssh::SshExecutor;

use futures::future::BoxFuture;

/// Runs commands and installs files on one host. Object safe: use `Arc<dyn Executor>`.
pub trait Executor: Send + Sync {
    /// The host this executor talks to (as configured, e.g. `10.213.0.11`).
    fn host(&self) -> &str;

    /// Run `cmd` and return its exit status and output. A non-zero exit is *not* an
    /// error here (see [`Output::check`] and [`Executor::run_ok`]); failing to run is.
    fn run<'a>(&'a self, cmd: &'a Cmd) -> BoxFuture<'a, Result<Output, ExecError>>;

    /// Atomically install `content` at `path` with `mode`, `owner` and `group`: the
    /// content is streamed on stdin into a temp file in the same directory, which is then
    /// chowned, chmodded, fsynced and renamed over `path`. The directory must exist.
    fn upload<'a>(
        &'a self,
        path: &'a str,
        content: &'a [u8],
        mode: u32,
        owner: &'a str,
        group: &'a str,
    ) -> BoxFuture<'a, Result<(), ExecError>>;

    /// Run `cmd` and turn a non-zero exit into [`ExecError::Failed`] naming `step`.
    fn run_ok<'a>(
        &'a self,
        cmd: &'a Cmd,
        step: &'a str,
    ) -> BoxFuture<'a, Result<Output, ExecError>> {
        Box::pin(async move { self.run(cmd).await?.check(step) })
    }
}

#[cfg(test)]
mod quoting_tests;
