//! Why a host did not converge, typed: the host, the step, and the kind of failure, so that
//! callers decide on the kind (reachability, what to tell a person) instead of parsing text.
//! The text stays what it always was: `step: cause`, the cause naming the host.

use std::fmt;

use crate::exec::ExecError;

/// What kind of failure stopped a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostErrorKind {
    /// No SSH session: network, refused, connect timeout, authentication, an unusable client key.
    Unreachable,
    /// The host's key is not known, or is not the one known or pinned for it.
    HostKey,
    /// A command ran and exited non-zero.
    CommandFailed {
        /// Exit status (`-1` if killed by a signal).
        exit_code: i32,
        /// The last lines of stderr (or stdout).
        stderr_tail: String,
    },
    /// A command took longer than allowed.
    Timeout,
    /// etcd did not become healthy.
    Etcd,
    /// Patroni's REST API failed, or a member did not come up.
    Patroni,
    /// The host belongs to another cluster (its claim names it).
    Claimed,
    /// An unclaimed host holds PostgreSQL data, an etcd or an HAProxy configuration that
    /// pgmetal did not make: nothing was written on it (see `first_contact`).
    NotFree,
    /// A topology change was refused (quorum, a data directory of another cluster): nothing
    /// was changed, and the message says what to do instead.
    Refused,
    /// A Kubernetes API call failed (the operator's own, e.g. publishing haproxy.cfg).
    Kubernetes,
    /// A certificate could not be read or issued (see `spec.tls`).
    Tls,
    /// Anything else: rendering, facts, I/O.
    Other,
}

impl HostErrorKind {
    /// True when no SSH session could be had (the host is not `reachable` in status).
    pub fn is_connection(&self) -> bool {
        matches!(self, Self::Unreachable | Self::HostKey)
    }
}

impl From<&ExecError> for HostErrorKind {
    fn from(e: &ExecError) -> Self {
        match e {
            ExecError::Connect { .. } | ExecError::Auth { .. } => Self::Unreachable,
            ExecError::HostKeyMismatch { .. } | ExecError::UnknownHostKey { .. } => Self::HostKey,
            ExecError::Timeout { .. } => Self::Timeout,
            ExecError::Failed {
                status,
                stderr_tail,
                ..
            } => Self::CommandFailed {
                exit_code: *status,
                stderr_tail: stderr_tail.clone(),
            },
            ExecError::Io { .. } | ExecError::Protocol { .. } => Self::Other,
        }
    }
}

/// What went wrong inside a step, before the engine names the host and the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The kind.
    pub kind: HostErrorKind,
    /// The cause, for people.
    pub message: String,
}

impl Failure {
    /// A failure of `kind`.
    pub fn new(kind: HostErrorKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<ExecError> for Failure {
    fn from(e: ExecError) -> Self {
        Failure::new(HostErrorKind::from(&e), e.to_string())
    }
}

impl From<super::facts::FactsError> for Failure {
    fn from(e: super::facts::FactsError) -> Self {
        match e {
            super::facts::FactsError::Exec(e) => e.into(),
            other => Failure::new(HostErrorKind::Other, other.to_string()),
        }
    }
}

impl From<super::patroni_api::ApiError> for Failure {
    fn from(e: super::patroni_api::ApiError) -> Self {
        Failure::new(HostErrorKind::Patroni, e.to_string())
    }
}

impl From<crate::tls::TlsError> for Failure {
    fn from(e: crate::tls::TlsError) -> Self {
        Failure::new(HostErrorKind::Tls, e.to_string())
    }
}

impl From<crate::render::RenderError> for Failure {
    fn from(e: crate::render::RenderError) -> Self {
        Failure::new(HostErrorKind::Other, e.to_string())
    }
}

/// Why a host did not converge. Displays as `step: cause` (just the cause outside a step).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct HostError {
    /// The host.
    pub host: String,
    /// The step it failed in (`connect` for the connection), if any.
    pub step: Option<String>,
    /// The kind of failure.
    pub kind: HostErrorKind,
    /// The cause, for people (names the host, and for host keys the fingerprints).
    pub message: String,
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.step {
            Some(step) => write!(f, "{step}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl HostError {
    /// `failure` on `host`, in `step` if any.
    pub fn new(host: &str, step: Option<&str>, failure: impl Into<Failure>) -> Self {
        let f = failure.into();
        HostError {
            host: host.to_string(),
            step: step.map(String::from),
            kind: f.kind,
            message: f.message,
        }
    }

    /// The same failure without the host (for a step of the cluster as a whole); the text keeps
    /// step and host.
    pub fn failure(&self) -> Failure {
        Failure::new(self.kind.clone(), self.to_string())
    }

    /// No SSH session to `host`: a host key error, or [`HostErrorKind::Unreachable`].
    pub fn connect(host: &str, e: &ExecError) -> Self {
        let kind = if e.is_host_key_error() {
            HostErrorKind::HostKey
        } else {
            HostErrorKind::Unreachable
        };
        HostError::new(host, Some("connect"), Failure::new(kind, e.to_string()))
    }
}

/// Serializes as the Display text (the report's `hosts.<host>.error` is a string).
pub(crate) fn as_text<S: serde::Serializer>(
    e: &Option<HostError>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match e {
        Some(e) => s.collect_str(e),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_the_exec_error_and_the_text_stays() {
        let mismatch = ExecError::HostKeyMismatch {
            host: "h".into(),
            expected: vec!["SHA256:a".into()],
            got: "SHA256:b".into(),
        };
        let e = HostError::connect("h", &mismatch);
        assert_eq!(e.kind, HostErrorKind::HostKey);
        assert!(e.kind.is_connection());
        assert_eq!(e.to_string(), format!("connect: {mismatch}"));
        let failed = ExecError::Failed {
            host: "h".into(),
            step: "stop".into(),
            cmd_display: "systemctl stop x".into(),
            status: 5,
            stderr_tail: "no such unit".into(),
        };
        let text = failed.to_string();
        let e = HostError::new("h", Some("unit x"), failed);
        assert_eq!(e.to_string(), format!("unit x: {text}"));
        assert_eq!(
            e.kind,
            HostErrorKind::CommandFailed {
                exit_code: 5,
                stderr_tail: "no such unit".into()
            }
        );
        assert!(!e.kind.is_connection());
        let bare = HostError::new("h", None, Failure::new(HostErrorKind::Other, "x"));
        assert_eq!(bare.to_string(), "x");
        let json = serde_json::json!({ "error": SerializeAsText(Some(bare)) });
        assert_eq!(json["error"], "x");
    }

    struct SerializeAsText(Option<HostError>);
    impl serde::Serialize for SerializeAsText {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            as_text(&self.0, s)
        }
    }
}
