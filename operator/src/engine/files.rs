//! Writing desired files: one round trip hashes what is on the host, only differing files are
//! uploaded (atomically), so a second run writes nothing.

use std::collections::BTreeMap;

use crate::exec::{Cmd, ExecError, Executor};
use crate::model::DesiredFile;

/// Uploads every file whose content (or mode/owner) differs; returns the paths written.
pub async fn sync(exec: &dyn Executor, files: &[DesiredFile]) -> Result<Vec<String>, ExecError> {
    sync_for(exec, files, None).await
}

/// [`sync`] for the files of a unit: before the first file is replaced, the unit's `marker`
/// is written (see `units::pending_marker`).
pub async fn sync_for(
    exec: &dyn Executor,
    files: &[DesiredFile],
    marker: Option<&str>,
) -> Result<Vec<String>, ExecError> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let current = remote_state(exec, files.iter().map(|f| f.path.as_str())).await?;
    let mut written = Vec::new();
    let changing: Vec<&DesiredFile> = files.iter().filter(|f| differs(&current, f)).collect();
    if let (Some(m), false) = (marker, changing.is_empty()) {
        mark(exec, m).await?;
    }
    for f in changing {
        make_parent(exec, &f.path).await?;
        exec.upload(&f.path, &f.content, f.mode, &f.owner, &f.group)
            .await?;
        written.push(f.path.clone());
    }
    Ok(written)
}

/// Writes the pending marker `path` (empty, in a directory made on the way).
async fn mark(exec: &dyn Executor, path: &str) -> Result<(), ExecError> {
    let cmd = Cmd::script(r#"mkdir -p "$(dirname "$1")" && : > "$1""#).arg(path);
    exec.run_ok(&cmd, "mark the unit's new configuration")
        .await
        .map(drop)
}

/// Like [`sync`] for one file that `check` must accept before it replaces the live one: the
/// new content goes to a candidate next to it, `check(candidate path)` runs, and only then is
/// the candidate renamed over the live file. A refused candidate is removed and the live file
/// stays as it was (so the next converge tries, and reports, again). True when written.
pub async fn sync_checked(
    exec: &dyn Executor,
    (f, marker): (&DesiredFile, Option<&str>),
    check: impl Fn(&str) -> Cmd,
) -> Result<bool, ExecError> {
    let current = remote_state(exec, std::iter::once(f.path.as_str())).await?;
    if !differs(&current, f) {
        return Ok(false);
    }
    if let Some(m) = marker {
        mark(exec, m).await?;
    }
    make_parent(exec, &f.path).await?;
    let candidate = candidate_path(&f.path);
    exec.upload(&candidate, &f.content, f.mode, &f.owner, &f.group)
        .await?;
    if let Err(e) = exec.run_ok(&check(&candidate), "check the new file").await {
        let rm = Cmd::new("rm").args(["-f", "--", &candidate]);
        let _ = exec.run(&rm).await;
        return Err(e);
    }
    let mv = Cmd::new("mv").args(["-f", "--", &candidate, &f.path]);
    exec.run_ok(&mv, "install the checked file").await?;
    Ok(true)
}

/// The candidate of `path`, in the same directory (so that the rename is atomic).
fn candidate_path(path: &str) -> String {
    match path.rsplit_once('/') {
        Some((dir, name)) => format!("{dir}/.{name}.pgmetal-new"),
        None => format!(".{path}.pgmetal-new"),
    }
}

/// A file's state on a host: hex SHA-256, octal mode, owner, group.
pub(super) type FileState = (String, String, String, String);

/// Whether `f` differs from what `current` says is on the host (missing counts as different).
pub(super) fn differs(current: &BTreeMap<String, FileState>, f: &DesiredFile) -> bool {
    let want = (
        f.sha256(),
        format!("{:o}", f.mode),
        f.owner.clone(),
        f.group.clone(),
    );
    current.get(&f.path) != Some(&want)
}

async fn make_parent(exec: &dyn Executor, path: &str) -> Result<(), ExecError> {
    let Some(dir) = path
        .rsplit_once('/')
        .map(|(d, _)| d)
        .filter(|d| !d.is_empty())
    else {
        return Ok(());
    };
    let mkdir = Cmd::new("mkdir").args(["-p", "--", dir]);
    exec.run_ok(&mkdir, "create directory").await?;
    Ok(())
}

/// `path -> (sha256, octal mode, owner, group)` for the paths that exist on the host.
async fn remote_state<'a>(
    exec: &dyn Executor,
    paths: impl Iterator<Item = &'a str>,
) -> Result<BTreeMap<String, FileState>, ExecError> {
    let script = r#"for p in "$@"; do [ -f "$p" ] || continue; h=$(sha256sum < "$p" | cut -d' ' -f1); printf '%s %s\n' "$h $(stat -c '%a %U %G' "$p")" "$p"; done"#;
    let out = exec
        .run_ok(
            &Cmd::script(script).args(paths.map(String::from)),
            "hash files",
        )
        .await?;
    Ok(parse_state(&out.stdout_str()))
}

/// Parses `SHA256 MODE OWNER GROUP PATH` lines.
pub(super) fn parse_state(text: &str) -> BTreeMap<String, FileState> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(5, ' ');
            let (h, m, o, g, p) = (it.next()?, it.next()?, it.next()?, it.next()?, it.next()?);
            Some((p.to_string(), (h.into(), m.into(), o.into(), g.into())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::FakeExecutor;

    fn file(path: &str, body: &str) -> DesiredFile {
        DesiredFile {
            path: path.into(),
            content: body.into(),
            mode: 0o640,
            owner: "postgres".into(),
            group: "postgres".into(),
        }
    }

    #[tokio::test]
    async fn writes_only_what_differs() {
        let same = file("/etc/a.conf", "same");
        let fake = FakeExecutor::new("h1");
        fake.on_contains("sha256sum", 0, &format!("{} 640 postgres postgres /etc/a.conf\nfff 640 postgres postgres /etc/b dir/b.conf\n", same.sha256()));
        let changed = file("/etc/b dir/b.conf", "new");
        let written = sync(&fake, &[same, changed]).await.unwrap();
        assert_eq!(written, ["/etc/b dir/b.conf"]);
        assert_eq!(fake.uploads().len(), 1);
    }

    #[tokio::test]
    async fn a_mode_change_alone_rewrites() {
        let f = file("/etc/a.conf", "x");
        let fake = FakeExecutor::new("h1");
        fake.on_contains(
            "sha256sum",
            0,
            &format!("{} 644 postgres postgres /etc/a.conf\n", f.sha256()),
        );
        assert_eq!(sync(&fake, &[f]).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_checked_file_replaces_the_live_one_only_when_its_check_passes() {
        let cfg = file("/etc/haproxy/haproxy.cfg", "bad");
        let check = |p: &str| Cmd::new("haproxy").args(["-c", "-q", "-f", p]);
        let fake = FakeExecutor::new("lb");
        fake.on_contains(
            "haproxy -c",
            1,
            "[ALERT] parsing [haproxy.cfg:3]: unknown keyword",
        );
        let e = sync_checked(&fake, (&cfg, None), check).await.unwrap_err();
        assert!(e.to_string().contains("unknown keyword"), "{e}");
        let uploads: Vec<String> = fake.uploads().into_iter().map(|u| u.path).collect();
        assert_eq!(
            uploads,
            ["/etc/haproxy/.haproxy.cfg.pgmetal-new"],
            "never the live file"
        );
        let cmds = fake.commands();
        assert!(
            cmds.iter()
                .any(|c| c.contains("rm -f -- /etc/haproxy/.haproxy.cfg.pgmetal-new")),
            "{cmds:?}"
        );
        assert!(!cmds.iter().any(|c| c.starts_with("mv")), "{cmds:?}");

        let good = FakeExecutor::new("lb");
        assert!(
            sync_checked(
                &good,
                (&cfg, Some("/var/lib/pgmetal/pending/haproxy")),
                check
            )
            .await
            .unwrap()
        );
        let cmds = good.commands();
        let checked = cmds
            .iter()
            .position(|c| c.contains("haproxy -c -q -f /etc/haproxy/.haproxy.cfg.pgmetal-new"));
        let moved = cmds.iter().position(|c| {
            c.contains("mv -f -- /etc/haproxy/.haproxy.cfg.pgmetal-new /etc/haproxy/haproxy.cfg")
        });
        assert!(checked.is_some() && moved > checked, "{cmds:?}");

        let same = FakeExecutor::new("lb");
        let line = format!(
            "{} 640 postgres postgres /etc/haproxy/haproxy.cfg\n",
            cfg.sha256()
        );
        same.on_contains("sha256sum", 0, &line);
        assert!(
            !sync_checked(&same, (&cfg, None), check).await.unwrap(),
            "nothing to write"
        );
        assert!(same.uploads().is_empty());
    }
}
