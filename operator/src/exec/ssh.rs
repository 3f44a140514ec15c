//! SSH executor: one russh connection per host, reused; a new session channel per command.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use russh::client::{self, Handle};
use russh::{ChannelMsg, Disconnect};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::connect::{Client, establish};
use super::known_hosts::KnownHosts;
use super::{Cmd, ExecError, Executor, Output, SshConfig, upload_cmd};

/// The output every command in flight may hold at once, across all hosts and clusters of this
/// process: far below the operator pod's memory limit (256 MiB in the chart). Each command has
/// its own limit too ([`Cmd::output_limit`]).
const PROCESS_BUDGET: usize = 64 << 20;
/// What the commands in flight hold now.
static IN_FLIGHT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One command's share of [`PROCESS_BUDGET`], given back when the command's output is read.
struct Held(usize);

impl Held {
    /// Counts `n` more bytes; an error when the process holds more than its budget.
    fn take(&mut self, n: usize) -> Result<(), String> {
        use std::sync::atomic::Ordering::SeqCst;
        self.0 += n;
        let now = IN_FLIGHT.fetch_add(n, SeqCst) + n;
        match now > PROCESS_BUDGET {
            true => Err(format!(
                "the commands in flight hold over {} MiB of output",
                PROCESS_BUDGET >> 20
            )),
            false => Ok(()),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(self.0, std::sync::atomic::Ordering::SeqCst);
    }
}
/// sshd's default `MaxSessions` is 10, and sshd frees a closed session only after it has
/// processed the packets already buffered (which may hold our next opens): 5 + 5 <= 10.
const MAX_CHANNELS: usize = 5;
/// Retries of a refused channel open ("no more sessions"), 50 ms apart times the attempt.
const OPEN_RETRIES: u32 = 5;

/// Runs commands on one host over a single, reused SSH connection.
pub struct SshExecutor {
    host: String,
    cfg: SshConfig,
    fingerprint: String,
    conn: tokio::sync::Mutex<Arc<Handle<Client>>>,
    channels: Semaphore,
}

impl fmt::Debug for SshExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshExecutor")
            .field("host", &self.host)
            .field("user", &self.cfg.user)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl SshExecutor {
    /// Connect and authenticate. Fails closed on an unknown or mismatching host key
    /// ([`ExecError::UnknownHostKey`], [`ExecError::HostKeyMismatch`]). With
    /// [`KnownHosts::TrustFirstUse`] the key seen now is pinned for later reconnects.
    pub async fn connect(host: &str, cfg: &SshConfig) -> Result<Self, ExecError> {
        let (handle, fp) = establish(host, cfg).await?;
        let mut cfg = cfg.clone();
        if matches!(cfg.known_hosts, KnownHosts::TrustFirstUse) {
            cfg.known_hosts = KnownHosts::Pinned(fp.clone());
        }
        Ok(SshExecutor {
            host: host.to_string(),
            cfg,
            fingerprint: fp,
            conn: tokio::sync::Mutex::new(Arc::new(handle)),
            channels: Semaphore::new(MAX_CHANNELS),
        })
    }

    /// SHA256 fingerprint of the host key accepted at connect time (`SHA256:...`); with
    /// trust-on-first-use, record it and pin it next time.
    pub fn host_key_fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Politely close the connection (later commands reconnect).
    pub async fn disconnect(&self) {
        let handle = self.conn.lock().await.clone();
        let _ = handle.disconnect(Disconnect::ByApplication, "", "en").await;
    }

    /// Open a session channel, reconnecting once if the connection is gone. Nothing has
    /// run yet at this point, so reconnecting cannot run a command twice.
    async fn open_channel(&self) -> Result<russh::Channel<client::Msg>, ExecError> {
        let mut handle = self.conn.lock().await.clone();
        let mut reconnected = false;
        let mut attempt = 0;
        loop {
            if handle.is_closed() && !reconnected {
                handle = self.reconnect(&handle).await?;
                reconnected = true;
            }
            match handle.channel_open_session().await {
                Ok(ch) => return Ok(ch),
                Err(e @ russh::Error::ChannelOpenFailure(_)) if attempt < OPEN_RETRIES => {
                    attempt += 1;
                    tracing::debug!(host = %self.host, "channel open refused ({e}); retrying");
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                }
                Err(e @ russh::Error::ChannelOpenFailure(_)) => return Err(self.protocol(e)),
                Err(e) if !reconnected => {
                    tracing::info!(host = %self.host, "SSH connection lost ({e}); reconnecting");
                    handle = self.reconnect(&handle).await?;
                    reconnected = true;
                }
                Err(e) => return Err(self.protocol(e)),
            }
        }
    }

    async fn reconnect(
        &self,
        dead: &Arc<Handle<Client>>,
    ) -> Result<Arc<Handle<Client>>, ExecError> {
        let mut conn = self.conn.lock().await;
        if Arc::ptr_eq(&conn, dead) {
            let (handle, _) = establish(&self.host, &self.cfg).await?;
            *conn = Arc::new(handle);
        }
        Ok(conn.clone())
    }

    fn protocol(&self, e: impl fmt::Display) -> ExecError {
        ExecError::Protocol {
            host: self.host.clone(),
            message: e.to_string(),
        }
    }

    async fn run_cmd(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        let shown = cmd.to_string();
        let limit = cmd.timeout_duration();
        let timed_out = || ExecError::Timeout {
            host: self.host.clone(),
            what: format!("`{shown}`"),
            secs: limit.as_secs(),
        };
        let deadline = Instant::now() + limit;
        let started = std::time::Instant::now();
        let _permit = self
            .channels
            .acquire()
            .await
            .map_err(|e| self.protocol(e))?;
        let channel = tokio::time::timeout_at(deadline, self.open_channel())
            .await
            .map_err(|_| timed_out())??;
        let (mut rx, tx) = channel.split();
        let line = cmd.to_wire(self.cfg.sudo);
        let exchange = async {
            tx.exec(true, line.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let write = async {
                if let Some(bytes) = cmd.stdin_bytes() {
                    tx.data(bytes).await?;
                }
                tx.eof().await
            };
            tokio::pin!(write);
            let read = read_channel(&mut rx, cmd.output_limit());
            tokio::pin!(read);
            let mut writing = true;
            loop {
                tokio::select! {
                    r = &mut read => break r,
                    w = &mut write, if writing => {
                        writing = false;
                        if let Err(e) = w {
                            tracing::debug!("writing stdin failed (command exited early?): {e}");
                        }
                    }
                }
            }
        };
        let result = tokio::time::timeout_at(deadline, exchange).await;
        tracing::debug!(host = %self.host, cmd = %shown, elapsed = ?started.elapsed(), "ran");
        match result {
            Ok(Ok((status, signal, stdout, stderr))) => Ok(Output {
                host: self.host.clone(),
                cmd_display: shown,
                status,
                signal,
                stdout,
                stderr,
            }),
            Ok(Err(message)) => Err(ExecError::Io {
                host: self.host.clone(),
                message: format!("`{shown}`: {message}"),
            }),
            Err(_) => {
                // The remote `timeout` wrapper stops the command; just drop our side.
                let _ = tx.close().await;
                Err(timed_out())
            }
        }
    }
}

type Collected = (i32, Option<String>, Vec<u8>, Vec<u8>);

/// Read until the channel closes (not merely until exit-status), collecting output.
async fn read_channel(rx: &mut russh::ChannelReadHalf, limit: usize) -> Result<Collected, String> {
    let (mut status, mut signal) = (None, None);
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut held = Held(0);
    loop {
        match rx.wait().await {
            Some(ChannelMsg::Data { data }) => {
                held.take(data.len())?;
                stdout.extend_from_slice(&data)
            }
            Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                held.take(data.len())?;
                stderr.extend_from_slice(&data)
            }
            Some(ChannelMsg::ExitStatus { exit_status }) => status = Some(exit_status as i32),
            Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                signal = Some(match signal_name {
                    russh::Sig::Custom(name) => name,
                    other => format!("{other:?}"),
                })
            }
            Some(ChannelMsg::Failure) => return Err("the server refused to run the command".into()),
            Some(ChannelMsg::Close) => break,
            None if status.is_none() && signal.is_none() => {
                return Err("connection lost before the command finished".into());
            }
            None => break,
            Some(_) => {}
        }
        if stdout.len() > limit || stderr.len() > limit {
            return Err(format!("output exceeds {} KiB", limit >> 10));
        }
    }
    let status = if signal.is_some() {
        -1
    } else {
        status.unwrap_or(-1)
    };
    Ok((status, signal, stdout, stderr))
}

impl Executor for SshExecutor {
    fn host(&self) -> &str {
        &self.host
    }

    fn run<'a>(&'a self, cmd: &'a Cmd) -> BoxFuture<'a, Result<Output, ExecError>> {
        Box::pin(self.run_cmd(cmd))
    }

    fn upload<'a>(
        &'a self,
        path: &'a str,
        content: &'a [u8],
        mode: u32,
        owner: &'a str,
        group: &'a str,
    ) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(async move {
            let cmd = upload_cmd(path, content, mode, owner, group);
            self.run_cmd(&cmd).await?.check(&format!("upload {path}"))?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;

    #[test]
    fn the_process_budget_is_shared_and_given_back() {
        let mut a = Held(0);
        assert!(a.take(PROCESS_BUDGET / 2).is_ok());
        let mut b = Held(0);
        let over = b.take(PROCESS_BUDGET / 2 + 1);
        assert!(
            over.is_err_and(|e| e.contains("64 MiB")),
            "together over the budget"
        );
        drop((a, b));
        let mut c = Held(0);
        assert!(
            c.take(PROCESS_BUDGET / 2 + 1).is_ok(),
            "given back when read"
        );
    }
}
