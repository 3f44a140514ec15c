//! Errors from running commands on hosts; every variant names the host it concerns.

/// Why a command or upload on a host did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The TCP connection or the SSH handshake failed (network, refused, protocol setup).
    #[error("{host}: cannot connect: {source}")]
    Connect {
        /// The host we tried to reach.
        host: String,
        /// The underlying cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The host presented a key that differs from every key we know for it.
    #[error(
        "{host}: host key mismatch, refusing to run anything: expected {}, got {got} \
         — update known_hosts if the host was reinstalled",
        expected.join(" or ")
    )]
    HostKeyMismatch {
        /// The host whose key did not match.
        host: String,
        /// SHA256 fingerprints of the keys known for the host.
        expected: Vec<String>,
        /// SHA256 fingerprint of the key the host presented.
        got: String,
    },
    /// No key is known for the host, so its identity cannot be verified.
    #[error(
        "{host}: host key {got} is not in known_hosts, refusing to run anything \
         — add the host's key to known_hosts"
    )]
    UnknownHostKey {
        /// The host with no known key.
        host: String,
        /// SHA256 fingerprint of the key the host presented.
        got: String,
    },
    /// The host did not accept our key for this user.
    #[error("{host}: authentication as {user} with the configured key was refused")]
    Auth {
        /// The host that refused us.
        host: String,
        /// The user we tried to log in as.
        user: String,
    },
    /// Connecting or a command took longer than allowed.
    #[error("{host}: {what} timed out after {secs} s")]
    Timeout {
        /// The host.
        host: String,
        /// What timed out (`connect`, or the command as displayed).
        what: String,
        /// The limit that was exceeded, in seconds.
        secs: u64,
    },
    /// A command ran and exited non-zero (see [`crate::exec::Output::check`]).
    #[error("{host}: {step} failed (exit status {status}): `{cmd_display}`: {stderr_tail}")]
    Failed {
        /// The host the command ran on.
        host: String,
        /// What the caller was trying to do, e.g. `restart patroni`.
        step: String,
        /// The command as displayed (never includes stdin).
        cmd_display: String,
        /// The exit status (`-1` if killed by a signal).
        status: i32,
        /// The last lines of stderr (or stdout if stderr was empty).
        stderr_tail: String,
    },
    /// A local or transport I/O problem, e.g. the connection dropped mid-command.
    #[error("{host}: I/O error: {message}")]
    Io {
        /// The host.
        host: String,
        /// What went wrong.
        message: String,
    },
    /// The SSH peer did something unexpected (exec refused, bad key material...).
    #[error("{host}: SSH protocol error: {message}")]
    Protocol {
        /// The host.
        host: String,
        /// What went wrong.
        message: String,
    },
}

impl ExecError {
    /// The host this error concerns.
    pub fn host(&self) -> &str {
        match self {
            ExecError::Connect { host, .. }
            | ExecError::HostKeyMismatch { host, .. }
            | ExecError::UnknownHostKey { host, .. }
            | ExecError::Auth { host, .. }
            | ExecError::Timeout { host, .. }
            | ExecError::Failed { host, .. }
            | ExecError::Io { host, .. }
            | ExecError::Protocol { host, .. } => host,
        }
    }

    /// True for host key errors: these need a human and must never be retried blindly.
    pub fn is_host_key_error(&self) -> bool {
        matches!(
            self,
            ExecError::HostKeyMismatch { .. } | ExecError::UnknownHostKey { .. }
        )
    }
}
