//! `FakeExecutor`: records commands and uploads and answers with scripted responses, for tests.

use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};

use super::{Cmd, ExecError, Executor, Output};

/// One recorded command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRun {
    /// The command as rendered (no sudo prefix), e.g. `systemctl restart patroni`.
    pub cmd: String,
    /// The stdin that was sent, if any.
    pub stdin: Option<Vec<u8>>,
}

/// One recorded upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedUpload {
    /// Destination path.
    pub path: String,
    /// File mode, e.g. `0o640`.
    pub mode: u32,
    /// Owner user.
    pub owner: String,
    /// Owner group.
    pub group: String,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    /// The content itself.
    pub content: Vec<u8>,
}

/// Everything the fake saw, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A command ran.
    Run(RecordedRun),
    /// A file was uploaded.
    Upload(RecordedUpload),
}

/// How a rule matches a command string.
#[derive(Clone, Debug)]
enum Match {
    Prefix(String),
    Contains(String),
}

/// What a matching rule answers.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Exit with this status and output.
    Exit {
        /// Exit status.
        status: i32,
        /// stdout.
        stdout: Vec<u8>,
        /// stderr.
        stderr: Vec<u8>,
    },
    /// Fail to run with [`ExecError::Io`] carrying this message (e.g. a dropped connection).
    Error(String),
}

#[derive(Debug)]
struct Rule {
    matcher: Match,
    reply: Reply,
    /// `Some(n)`: answer n more times, then stop matching.
    remaining: Option<usize>,
}

#[derive(Debug, Default)]
struct State {
    events: Vec<Event>,
    rules: Vec<Rule>,
}

/// An in-memory [`Executor`]: every command succeeds with empty output unless a rule
/// says otherwise. Rules are tried newest first; uploads are matched as `upload PATH`. Cloning shares the recorded state.
#[derive(Clone, Debug)]
pub struct FakeExecutor {
    host: String,
    state: Arc<Mutex<State>>,
}

impl FakeExecutor {
    /// A fake for `host`.
    pub fn new(host: &str) -> Self {
        FakeExecutor {
            host: host.to_string(),
            state: Arc::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide what was recorded.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, matcher: Match, reply: Reply, remaining: Option<usize>) -> &Self {
        self.state().rules.push(Rule {
            matcher,
            reply,
            remaining,
        });
        self
    }

    /// Commands starting with `prefix` exit with `status` and print `stdout`.
    pub fn on_prefix(&self, prefix: &str, status: i32, stdout: &str) -> &Self {
        self.add(Match::Prefix(prefix.into()), exit(status, stdout, ""), None)
    }

    /// Commands containing `needle` exit with `status` and print `stdout`.
    pub fn on_contains(&self, needle: &str, status: i32, stdout: &str) -> &Self {
        self.add(
            Match::Contains(needle.into()),
            exit(status, stdout, ""),
            None,
        )
    }

    /// Commands starting with `prefix` get `reply`, `times` times (then the rule expires).
    pub fn on_prefix_times(&self, prefix: &str, reply: Reply, times: usize) -> &Self {
        self.add(Match::Prefix(prefix.into()), reply, Some(times))
    }

    /// Commands containing `needle` get `reply`, for ever.
    pub fn on_contains_reply(&self, needle: &str, reply: Reply) -> &Self {
        self.add(Match::Contains(needle.into()), reply, None)
    }

    /// All events so far.
    pub fn events(&self) -> Vec<Event> {
        self.state().events.clone()
    }

    /// The command strings run so far, in order.
    pub fn commands(&self) -> Vec<String> {
        self.runs().into_iter().map(|r| r.cmd).collect()
    }

    /// The commands run so far, with their stdin.
    pub fn runs(&self) -> Vec<RecordedRun> {
        let events = self.state().events.clone();
        events
            .into_iter()
            .filter_map(|e| match e {
                Event::Run(r) => Some(r),
                Event::Upload(_) => None,
            })
            .collect()
    }

    /// The uploads so far, in order.
    pub fn uploads(&self) -> Vec<RecordedUpload> {
        let events = self.state().events.clone();
        events
            .into_iter()
            .filter_map(|e| match e {
                Event::Upload(u) => Some(u),
                Event::Run(_) => None,
            })
            .collect()
    }

    /// Forget recorded events (rules stay).
    pub fn clear(&self) {
        self.state().events.clear();
    }

    fn answer(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        let line = cmd.to_shell(false);
        let mut st = self.state();
        st.events.push(Event::Run(RecordedRun {
            cmd: line.clone(),
            stdin: cmd.stdin_bytes().map(<[u8]>::to_vec),
        }));
        let reply = reply_for(&mut st, &line);
        drop(st);
        match reply {
            Reply::Exit {
                status,
                stdout,
                stderr,
            } => Ok(Output {
                host: self.host.clone(),
                cmd_display: line,
                status,
                signal: None,
                stdout,
                stderr,
            }),
            Reply::Error(message) => Err(ExecError::Io {
                host: self.host.clone(),
                message,
            }),
        }
    }
}

/// The newest live rule matching `line`, or exit 0.
fn reply_for(st: &mut State, line: &str) -> Reply {
    let rule = st.rules.iter_mut().rev().find(|r| {
        r.remaining != Some(0)
            && match &r.matcher {
                Match::Prefix(p) => line.starts_with(p.as_str()),
                Match::Contains(n) => line.contains(n.as_str()),
            }
    });
    match rule {
        Some(r) => {
            if let Some(n) = r.remaining.as_mut() {
                *n -= 1;
            }
            r.reply.clone()
        }
        None => exit(0, "", ""),
    }
}

/// A [`Reply::Exit`] with text output.
/// Asserts that `script` parses as POSIX sh (`sh -n`), which is how hosts run pgmetal's scripts.
pub fn assert_valid_sh(script: &str) {
    let out = std::process::Command::new("/bin/sh")
        .args(["-n", "-c", script])
        .output()
        .expect("run /bin/sh -n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn exit(status: i32, stdout: &str, stderr: &str) -> Reply {
    Reply::Exit {
        status,
        stdout: stdout.as_bytes().to_vec(),
        stderr: stderr.as_bytes().to_vec(),
    }
}

impl Executor for FakeExecutor {
    fn host(&self) -> &str {
        &self.host
    }

    fn run<'a>(&'a self, cmd: &'a Cmd) -> BoxFuture<'a, Result<Output, ExecError>> {
        Box::pin(async move { self.answer(cmd) })
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
            // Rules can fail uploads too: they see the pseudo command `upload PATH`.
            let line = format!("upload {path}");
            let mut st = self.state();
            st.events.push(Event::Upload(RecordedUpload {
                path: path.to_string(),
                mode,
                owner: owner.to_string(),
                group: group.to_string(),
                sha256: hex::encode(Sha256::digest(content)),
                content: content.to_vec(),
            }));
            match reply_for(&mut st, &line) {
                Reply::Exit { status: 0, .. } => Ok(()),
                Reply::Exit { status, stderr, .. } => Err(ExecError::Failed {
                    host: self.host.clone(),
                    step: line.clone(),
                    cmd_display: line,
                    status,
                    stderr_tail: String::from_utf8_lossy(&stderr).into_owned(),
                }),
                Reply::Error(message) => Err(ExecError::Io {
                    host: self.host.clone(),
                    message,
                }),
            }
        })
    }
}

#[cfg(test)]
#[path = "fake_tests.rs"]
mod tests;
