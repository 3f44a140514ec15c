//! Which cluster a host belongs to: a small file pgmetal writes on a host's first converge and
//! checks before every later one, so that two clusters never manage (or wipe) one host.

use crate::exec::{Cmd, ExecError, Executor};

/// Annotation with which an operator cluster takes over the hosts `pgmetal apply` built under
/// the name it gives (the CLI's `metadata.name`): without it, a CLI cluster's hosts are
/// another cluster's, whatever the names.
pub const TAKE_OVER: &str = "pgmetal.io/take-over-from-cli";

/// Where the claim lives on every host of a cluster.
pub const PATH: &str = "/var/lib/pgmetal/claim";

/// The cluster that claims a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// `namespace/name` of the PostgresCluster (the operator), or `metadata.name` (the CLI).
    pub name: String,
    /// `metadata.uid` of the PostgresCluster; None for `pgmetal apply`.
    pub uid: Option<String>,
}

impl Owner {
    /// The claim file's text.
    pub fn render(&self) -> String {
        let uid = self.uid.as_deref().unwrap_or("");
        format!(
            "# pgmetal: this host belongs to the cluster below. pgmetal refuses to converge or wipe\n\
             # it for any other. Remove this file only when that cluster no longer uses the host.\n\
             name={}\nuid={uid}\n",
            self.name
        )
    }

    /// The owner a claim file names (None when it names none).
    pub fn parse(text: &str) -> Option<Owner> {
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(|v| v.trim().to_string())
        };
        let name = field("name").filter(|n| !n.is_empty())?;
        let uid = field("uid").filter(|u| !u.is_empty());
        Some(Owner { name, uid })
    }

    /// Whether `claimed` names this cluster: the same UID when both have one; the same name for
    /// two CLI claims; the same name (without namespace) when the CLI meets the operator's
    /// claim. An operator cluster never owns a CLI claim: it takes one over only when asked
    /// (see [`TAKE_OVER`]), which rewrites it with its UID.
    pub fn owns(&self, claimed: &Owner) -> bool {
        match (&self.uid, &claimed.uid) {
            (Some(a), Some(b)) => a == b,
            (Some(_), None) => false,
            _ => bare(&self.name) == bare(&claimed.name),
        }
    }
}

fn bare(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.uid {
            Some(uid) => write!(f, "{} (uid {uid})", self.name),
            None => write!(f, "{} (pgmetal apply)", self.name),
        }
    }
}

/// The owner the host's claim names, if it has one.
pub async fn read(ex: &dyn Executor) -> Result<Option<Owner>, ExecError> {
    let cat = Cmd::script(r#"[ -f "$1" ] && cat -- "$1"; exit 0"#).arg(PATH);
    let out = ex.run_ok(&cat, "read the host's claim").await?;
    Ok(Owner::parse(&out.stdout_str()))
}

/// Writes `me`'s claim: created exclusively (`set -C`: the shell's `O_EXCL`, which fails
/// where a claim appeared meanwhile) on an unclaimed host, or put in place of `replacing` only
/// while the file still says exactly that. Then read back: an error if it names another cluster.
pub async fn write(
    ex: &dyn Executor,
    me: &Owner,
    replacing: Option<&Owner>,
) -> Result<(), super::error::Failure> {
    const WRITE: &str = r#"mkdir -p "$(dirname "$1")" || exit 1
if [ -z "$3" ]; then
  (set -C; printf '%s' "$2" > "$1") 2>/dev/null || { echo "another cluster claimed the host meanwhile" >&2; exit 4; }
elif [ "$(cat -- "$1")" = "$(printf '%s' "$3")" ]; then
  tmp=$(mktemp "$1.XXXXXX") && printf '%s' "$2" > "$tmp" && chmod 644 "$tmp" && mv -f -- "$tmp" "$1"
else echo "the host's claim changed meanwhile" >&2; exit 4; fi"#;
    let old = replacing.map(Owner::render).unwrap_or_default();
    let cmd = Cmd::script(WRITE).args([PATH.to_string(), me.render(), old]);
    ex.run_ok(&cmd, "claim the host").await?;
    match judge(me, read(ex).await?, None) {
        Verdict::Foreign(other) => Err(super::error::Failure::new(
            super::HostErrorKind::Claimed,
            format!("the claim read back names {other}, not this cluster"),
        )),
        _ => Ok(()),
    }
}

/// What a converge may do with a host, given its claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The claim names this cluster exactly: nothing to write.
    Ours,
    /// No claim, or the CLI's claim of the same name that the operator takes over: write ours.
    Write,
    /// Another cluster's host: refuse it.
    Foreign(Owner),
}

/// Judges a host's claim for `me`, which takes over the CLI cluster named `take_over` (the
/// [`TAKE_OVER`] annotation) if any.
pub fn judge(me: &Owner, claimed: Option<Owner>, take_over: Option<&str>) -> Verdict {
    match claimed {
        None => Verdict::Write,
        // Ours (a CLI run never rewrites the operator's claim).
        Some(c) if me.owns(&c) => Verdict::Ours,
        // The operator takes over what `pgmetal apply` built, when the resource names it.
        Some(c) if c.uid.is_none() && me.uid.is_some() && take_over == Some(c.name.as_str()) => {
            Verdict::Write
        }
        Some(c) => Verdict::Foreign(c),
    }
}

/// Removes the claim (on deletion or decommission, after the services are stopped): the kept
/// data may then be taken over by a new cluster. The cluster's certificate files go first.
pub async fn release(ex: &dyn Executor) -> Result<(), ExecError> {
    // The cluster's server key goes first: a host that left must not be able to pose as it.
    let keys = [
        crate::render::POSTGRES_PEM,
        crate::render::backup::RESTORE_PEM,
        crate::render::CA_CERT,
        crate::render::EXPIRY_METRICS,
    ];
    let rm_keys = Cmd::new("rm").args(["-f", "--"]).args(keys);
    ex.run_ok(&rm_keys, "remove the cluster's certificates")
        .await?;
    let rm = Cmd::new("rm").args(["-f", "--", PATH]);
    ex.run_ok(&rm, "release the host's claim").await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(uid: &str) -> Owner {
        Owner {
            name: "db/pg".into(),
            uid: Some(uid.into()),
        }
    }

    #[test]
    fn a_claim_round_trips_and_decides_who_owns_a_host() {
        let me = op("u-1");
        assert_eq!(Owner::parse(&me.render()), Some(me.clone()));
        let cli = Owner {
            name: "pg".into(),
            uid: None,
        };
        assert_eq!(Owner::parse(&cli.render()), Some(cli.clone()));
        assert_eq!(Owner::parse("garbage\n"), None);
        assert_eq!(judge(&me, None, None), Verdict::Write);
        assert_eq!(judge(&me, Some(me.clone()), None), Verdict::Ours);
        assert_eq!(
            judge(&me, Some(cli.clone()), None),
            Verdict::Foreign(cli.clone()),
            "a CLI cluster of the same name in any namespace is not this one"
        );
        assert!(!me.owns(&cli), "nor does teardown take it for this one's");
        assert_eq!(
            judge(&me, Some(cli.clone()), Some("pg")),
            Verdict::Write,
            "takes over the CLI build it names"
        );
        assert_eq!(
            judge(&me, Some(cli.clone()), Some("other")),
            Verdict::Foreign(cli.clone())
        );
        assert_eq!(
            judge(&me, Some(op("u-2")), Some("pg")),
            Verdict::Foreign(op("u-2")),
            "re-created: another UID"
        );
        let other = Owner {
            name: "other".into(),
            uid: None,
        };
        assert_eq!(
            judge(&cli, Some(other.clone()), None),
            Verdict::Foreign(other)
        );
        assert_eq!(
            judge(&cli, Some(me.clone()), None),
            Verdict::Ours,
            "the CLI keeps the operator's claim"
        );
    }
}
