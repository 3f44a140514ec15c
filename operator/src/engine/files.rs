//! Writing desired files: one round trip hashes what is on the host, only differing files are
//! uploaded (atomically), so a second run writes nothing.

use std::collections::BTreeMap;

use crate::exec::{Cmd, ExecError, Executor};
use crate::model::DesiredFile;

/// Uploads every file whose content (or mode/owner) differs; returns the paths written.
pub async fn sync(exec: &dyn Executor, files: &[DesiredFile]) -> Result<Vec<String>, ExecError> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let current = remote_state(exec, files.iter().map(|f| f.path.as_str())).await?;
    let mut written = Vec::new();
    for f in files {
        let want = (
            f.sha256(),
            format!("{:o}", f.mode),
            f.owner.clone(),
            f.group.clone(),
        );
        if current.get(&f.path) == Some(&want) {
            continue;
        }
        if let Some(dir) = f
            .path
            .rsplit_once('/')
            .map(|(d, _)| d)
            .filter(|d| !d.is_empty())
        {
            exec.run_ok(
                &Cmd::new("mkdir").args(["-p", "--", dir]),
                "create directory",
            )
            .await?;
        }
        exec.upload(&f.path, &f.content, f.mode, &f.owner, &f.group)
            .await?;
        written.push(f.path.clone());
    }
    Ok(written)
}

/// `path -> (sha256, octal mode, owner, group)` for the paths that exist on the host.
async fn remote_state<'a>(
    exec: &dyn Executor,
    paths: impl Iterator<Item = &'a str>,
) -> Result<BTreeMap<String, (String, String, String, String)>, ExecError> {
    let script = r#"for p in "$@"; do [ -f "$p" ] || continue; h=$(sha256sum < "$p" | cut -d' ' -f1); printf '%s %s\n' "$h $(stat -c '%a %U %G' "$p")" "$p"; done"#;
    let out = exec
        .run_ok(
            &Cmd::script(script).args(paths.map(String::from)),
            "hash files",
        )
        .await?;
    Ok(parse_state(&out.stdout_str()))
}

fn parse_state(text: &str) -> BTreeMap<String, (String, String, String, String)> {
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
}
