//! `Cmd` (a program and its arguments, rendered to one fully quoted shell string) and `Output`.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use super::ExecError;

/// Timeout for ordinary commands.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// Timeout for package installs and other slow commands.
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(900);

/// Quote one word for a POSIX shell. Every word we render goes through this.
pub fn quote(word: &str) -> Cow<'_, str> {
    if word.is_empty() {
        return Cow::Borrowed("''");
    }
    shell_escape::unix::escape(Cow::Borrowed(word))
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Program {
    Exec(String),
    Script(&'static str),
}

/// A command to run on a host: a program plus arguments, or a fixed shell script plus
/// positional arguments. Rendered with every word quoted, so arguments never reach the
/// shell as code.
#[derive(Clone, PartialEq, Eq)]
pub struct Cmd {
    program: Program,
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    max_output: usize,
}

/// The most stdout (or stderr) a command may print before it fails: far above what pgmetal's
/// probes print (a package list: ~100 KiB). Steps that print more say so ([`Cmd::max_output`]).
pub const DEFAULT_MAX_OUTPUT: usize = 1 << 20;

impl Cmd {
    /// A command running `program` (looked up in `PATH` on the host). It must be an
    /// executable, not a shell builtin (it is exec'd by `sudo`/`timeout`): use
    /// [`Cmd::script`] for `command -v`, `cd`, redirections and pipes.
    pub fn new(program: impl Into<String>) -> Self {
        Self::with(Program::Exec(program.into()))
    }

    /// A fixed shell snippet, run as `sh -c 'SCRIPT' sh ARG...`; the snippet reads its
    /// arguments as `"$1"`, `"$2"`, ... Only for constant scripts: never format data into it.
    pub fn script(script: &'static str) -> Self {
        Self::with(Program::Script(script))
    }

    fn with(program: Program) -> Self {
        Cmd {
            program,
            args: Vec::new(),
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
            max_output: DEFAULT_MAX_OUTPUT,
        }
    }

    /// Append one argument (passed to the program literally).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Append several arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Bytes to feed on the command's stdin (then EOF). Never shown in logs or errors.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Override the timeout (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Override the most output the command may print (default [`DEFAULT_MAX_OUTPUT`]).
    pub fn max_output(mut self, bytes: usize) -> Self {
        self.max_output = bytes;
        self
    }

    /// The most output the command may print, per stream.
    pub fn output_limit(&self) -> usize {
        self.max_output
    }

    /// The stdin bytes, if any.
    pub fn stdin_bytes(&self) -> Option<&[u8]> {
        self.stdin.as_deref()
    }

    /// The timeout for this command.
    pub fn timeout_duration(&self) -> Duration {
        self.timeout
    }

    /// The arguments (without the program or script).
    pub fn arguments(&self) -> &[String] {
        &self.args
    }

    /// Render to one shell command line, every word quoted; with `sudo`, prefixed by
    /// `sudo -n --` so a missing sudo rule fails instead of prompting.
    pub fn to_shell(&self, sudo: bool) -> String {
        self.render(sudo, None)
    }

    /// What an executor sends: [`Cmd::to_shell`] with the command wrapped in coreutils
    /// `timeout`, so the host stops it (TERM 1 s after our own timeout, KILL 5 s later)
    /// even when sshd refuses to signal sessions (it does for root logins).
    pub fn to_wire(&self, sudo: bool) -> String {
        self.render(sudo, Some(self.timeout.as_secs().saturating_add(1)))
    }

    fn render(&self, sudo: bool, remote_timeout: Option<u64>) -> String {
        let mut words: Vec<Cow<'_, str>> = Vec::with_capacity(self.args.len() + 10);
        if sudo {
            words.extend(["sudo", "-n", "--"].map(Cow::Borrowed));
        }
        if let Some(secs) = remote_timeout {
            words.extend(["timeout", "-k", "5"].map(Cow::Borrowed));
            words.push(Cow::Owned(secs.to_string()));
        }
        match &self.program {
            Program::Exec(p) => words.push(quote(p)),
            Program::Script(s) => {
                words.extend(["sh", "-c"].map(Cow::Borrowed));
                words.push(quote(s));
                words.push(Cow::Borrowed("sh"));
            }
        }
        words.extend(self.args.iter().map(|a| quote(a)));
        words.join(" ")
    }
}

/// Shows the command line without sudo and without stdin (which may hold secrets).
impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_shell(false))
    }
}

/// Like `Display`, plus the timeout and the stdin length (never its content).
impl fmt::Debug for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cmd")
            .field("cmd", &self.to_shell(false))
            .field("stdin_len", &self.stdin.as_ref().map(Vec::len))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// What a finished command produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// The host the command ran on.
    pub host: String,
    /// The command as displayed (no stdin, no sudo prefix).
    pub cmd_display: String,
    /// Exit status; `-1` if the command was killed by a signal or reported none.
    pub status: i32,
    /// The signal that killed the command, if any (e.g. `KILL`).
    pub signal: Option<String>,
    /// Raw stdout.
    pub stdout: Vec<u8>,
    /// Raw stderr.
    pub stderr: Vec<u8>,
}

impl Output {
    /// True when the command exited with status 0.
    pub fn ok(&self) -> bool {
        self.status == 0 && self.signal.is_none()
    }

    /// stdout as text (invalid UTF-8 replaced).
    pub fn stdout_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stdout)
    }

    /// stderr as text (invalid UTF-8 replaced).
    pub fn stderr_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stderr)
    }

    /// `Ok(self)` on exit 0, else [`ExecError::Failed`] naming `step`, the host, the
    /// command and the tail of stderr (of stdout when stderr is empty).
    pub fn check(self, step: &str) -> Result<Output, ExecError> {
        if self.ok() {
            return Ok(self);
        }
        let src = if self.stderr.iter().all(u8::is_ascii_whitespace) {
            &self.stdout
        } else {
            &self.stderr
        };
        let mut stderr_tail = tail(&String::from_utf8_lossy(src), 10, 2000);
        if let Some(sig) = &self.signal {
            stderr_tail = format!("killed by signal {sig}; {stderr_tail}");
        }
        Err(ExecError::Failed {
            host: self.host,
            step: step.to_string(),
            cmd_display: self.cmd_display,
            status: self.status,
            stderr_tail,
        })
    }
}

/// The last `lines` lines of `text`, at most `max` bytes, trimmed.
fn tail(text: &str, lines: usize, max: usize) -> String {
    let text = text.trim_end();
    let start = text
        .rmatch_indices('\n')
        .nth(lines.saturating_sub(1))
        .map_or(0, |(i, _)| i + 1);
    let mut t = &text[start..];
    if t.len() > max {
        let mut cut = t.len() - max;
        while !t.is_char_boundary(cut) {
            cut += 1;
        }
        t = &t[cut..];
    }
    t.to_string()
}

/// Writes stdin to a temp file next to the target, sets mode and owner, fsyncs, renames. The
/// temp file is created exclusively (`set -C`): a file or symlink already at its name (planted
/// by whoever can write the directory) fails the upload instead of being written through.
const UPLOAD_SCRIPT: &str = r#"set -eu
dst=$1 tmp=$2 mode=$3 owner=$4
(umask 077 && set -C && cat >"$tmp")
trap 'rm -f -- "$tmp"' EXIT
chown -h -- "$owner" "$tmp"
chmod -- "$mode" "$tmp"
sync -- "$tmp" 2>/dev/null || true
mv -f -- "$tmp" "$dst"
trap - EXIT"#;

/// The command that atomically installs `content` at `path` (content goes via stdin,
/// never onto the command line). The temp file is `PATH.pgmetal-tmp.RANDOM`.
pub fn upload_cmd(path: &str, content: &[u8], mode: u32, owner: &str, group: &str) -> Cmd {
    let nonce: u64 = rand::random();
    Cmd::script(UPLOAD_SCRIPT)
        .arg(path)
        .arg(format!("{path}.pgmetal-tmp.{nonce:016x}"))
        .arg(format!("{:04o}", mode & 0o7777))
        .arg(format!("{owner}:{group}"))
        .stdin(content.to_vec())
}

#[cfg(test)]
mod upload_tests {
    use super::*;

    #[test]
    fn an_upload_never_writes_through_a_planted_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let (dst, victim) = (dir.path().join("dst"), dir.path().join("victim"));
        std::fs::write(&victim, "kept").unwrap();
        let tmp = dir.path().join("dst.planted");
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        let user = String::from_utf8(
            std::process::Command::new("id")
                .arg("-un")
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        let owner = format!("{0}:{0}", user.trim());
        let run = |tmp: &std::path::Path| {
            let mut child = std::process::Command::new("sh")
                .args(["-c", UPLOAD_SCRIPT, "sh"])
                .arg(&dst)
                .arg(tmp)
                .args(["0644", &owner])
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            use std::io::Write;
            // A refusing script may exit before it reads: a broken pipe is no failure here.
            let _ = child.stdin.take().unwrap().write_all(b"new");
            child.wait().unwrap().success()
        };
        assert!(!run(&tmp), "refused");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "kept");
        assert!(!dst.exists());
        assert!(
            run(&dir.path().join("dst.fresh")),
            "a fresh temp name works"
        );
        assert_eq!(std::fs::read_to_string(&dst).unwrap(), "new");
    }
}
