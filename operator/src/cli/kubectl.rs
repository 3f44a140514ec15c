//! `kubectl pgmetal`: the same binary installed as `kubectl-pgmetal`. It acts through the API
//! server and the database ports only, never SSH: each command reads the resource, or makes an
//! edit a person could make with kubectl.

use std::fmt::Write;

use clap::{Args, Parser, Subcommand};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};

use super::{Format, table};
use crate::api::{PostgresCluster, PostgresClusterStatus};
use crate::engine::requests::{BACKUP_NOW, BACKUP_TYPE, REINIT, RESTART_AT};

/// The field manager of the plugin's edits (shown in managedFields).
const MANAGER: &str = "kubectl-pgmetal";

/// Field managers of GitOps tools: an edit by hand is reverted at their next sync.
const GITOPS_MANAGERS: [&str; 5] = [
    "kustomize-controller",
    "helm-controller",
    "argocd-controller",
    "argocd-application-controller",
    "fleet-agent",
];

/// The command line of `kubectl-pgmetal` (kubectl runs it for `kubectl pgmetal ...`).
#[derive(Parser, Debug)]
#[command(
    name = "kubectl pgmetal",
    bin_name = "kubectl pgmetal",
    version,
    about = "pgmetal's PostgresClusters from kubectl: status, switchover, psql (API server and database ports only)"
)]
pub struct PluginCli {
    /// The plugin's options and command.
    #[command(flatten)]
    pub plugin: Plugin,
}

/// Whether this process runs as the kubectl plugin (its file name is `kubectl-pgmetal`).
pub fn invoked_as_plugin() -> bool {
    std::env::args_os().next().is_some_and(|a| {
        std::path::Path::new(&a)
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("kubectl-pgmetal"))
    })
}

/// `kubectl pgmetal [-n NAMESPACE] [--context CONTEXT] COMMAND`.
#[derive(Args, Debug)]
pub struct Plugin {
    /// Namespace of the PostgresCluster (default: the kubeconfig context's).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// kubeconfig context (default: the current one; KUBECONFIG is honoured).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: PluginCommand,
}

/// The plugin's commands.
#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Members, roles, lag, timeline, etcd, routing, the last failover and the conditions.
    #[command(after_help = "Example:\n  kubectl pgmetal status pg-ha -n db")]
    Status {
        /// The PostgresCluster.
        name: String,
        /// Output format (json and yaml print the resource's status).
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: Format,
    },
    /// Make HOST the primary: sets spec.postgres.primary (the old primary becomes a replica);
    /// the operator switches over once HOST is a streaming replica within maximumLagOnFailover.
    #[command(after_help = "Example:\n  kubectl pgmetal switchover pg-ha 10.0.0.12 -n db")]
    Switchover {
        /// The PostgresCluster.
        name: String,
        /// The PostgreSQL host to make the primary (one of spec.postgres.replicas).
        host: String,
    },
    /// A rolling restart of every member (replicas first, then a switchover, the old primary,
    /// and the primary back): sets the annotation pgmetal.io/restart-at to now.
    #[command(after_help = "Example:\n  kubectl pgmetal restart pg-ha -n db")]
    Restart {
        /// The PostgresCluster.
        name: String,
    },
    /// Reinitialize a broken replica from a new basebackup (its data is replaced): sets the
    /// annotation pgmetal.io/reinit to HOST.
    #[command(after_help = "Example:\n  kubectl pgmetal reinit pg-ha 10.0.0.13 -n db")]
    Reinit {
        /// The PostgresCluster.
        name: String,
        /// The replica's host (one of spec.postgres.replicas).
        host: String,
    },
    /// A backup now (spec.backup): sets the annotation pgmetal.io/backup-now to now, and
    /// pgmetal.io/backup-type; status.requests.backedUpAt says when it was taken.
    #[command(after_help = "Examples:\n  kubectl pgmetal backup pg-ha -n db\n  \
                            kubectl pgmetal backup pg-ha -n db --type diff")]
    Backup {
        /// The PostgresCluster.
        name: String,
        /// `full` (default) or `diff` (the changes since the last full backup).
        #[arg(long = "type", default_value = "full", value_parser = ["full", "diff"])]
        kind: String,
    },
    /// The topology steps of the running converge (status.plan), disruptive ones marked, and
    /// why a change was refused (Stalled TopologyRefused).
    #[command(after_help = "Example:\n  kubectl pgmetal plan pg-ha -n db")]
    Plan {
        /// The PostgresCluster.
        name: String,
    },
    /// psql through HAProxy's read-write port (or read-only with --replica) as the superuser,
    /// with the password from the cluster's Secret; arguments after `--` go to psql.
    #[command(after_help = "Examples:\n  kubectl pgmetal psql pg-ha -n db\n  \
                            kubectl pgmetal psql pg-ha -n db --replica -- -c 'SELECT 1'")]
    Psql {
        /// The PostgresCluster.
        name: String,
        /// Connect through the read-only port (a replica).
        #[arg(long)]
        replica: bool,
        /// Arguments for psql.
        #[arg(last = true)]
        args: Vec<String>,
    },
}

/// Runs one plugin command; `Ok(false)` when the cluster is not Ready (status) or psql failed.
pub async fn run(p: Plugin) -> Result<bool, String> {
    let options = kube::config::KubeConfigOptions {
        context: p.context.clone(),
        ..Default::default()
    };
    let config = kube::Config::from_kubeconfig(&options)
        .await
        .map_err(|e| format!("kubeconfig: {e}"))?;
    let ns = p.namespace.unwrap_or(config.default_namespace.clone());
    let client = kube::Client::try_from(config).map_err(|e| format!("client: {e}"))?;
    let clusters: Api<PostgresCluster> = Api::namespaced(client.clone(), &ns);
    let get = |name: String| {
        let clusters = clusters.clone();
        let ns = ns.clone();
        async move {
            clusters
                .get(&name)
                .await
                .map_err(|e| format!("postgrescluster {ns}/{name}: {}", said(&e)))
        }
    };
    match p.command {
        PluginCommand::Status { name, output } => status(&get(name).await?, output),
        PluginCommand::Restart { name } => {
            let now = k8s_openapi::jiff::Timestamp::now().to_string();
            request(&clusters, &get(name).await?, &[(RESTART_AT, &now)]).await
        }
        PluginCommand::Reinit { name, host } => {
            let pgc = get(name).await?;
            if !pgc.spec.postgres.replicas.contains(&host) {
                let replicas = pgc.spec.postgres.replicas.join(", ");
                return Err(format!(
                    "{host} is not one of spec.postgres.replicas [{replicas}]"
                ));
            }
            request(&clusters, &pgc, &[(REINIT, &host)]).await
        }
        PluginCommand::Backup { name, kind } => {
            let pgc = get(name).await?;
            if pgc.spec.backup.is_none() {
                return Err("spec.backup is not set: this cluster takes no backups".into());
            }
            let now = k8s_openapi::jiff::Timestamp::now().to_string();
            request(&clusters, &pgc, &[(BACKUP_TYPE, &kind), (BACKUP_NOW, &now)]).await
        }
        PluginCommand::Plan { name } => {
            let st = get(name).await?.status.unwrap_or_default();
            print!("{}", plan_text(&st));
            Ok(!condition(&st, "Stalled").is_some_and(|(t, _, _)| t))
        }
        PluginCommand::Switchover { name, host } => {
            switchover(&clusters, &get(name).await?, &host).await
        }
        PluginCommand::Psql {
            name,
            replica,
            args,
        } => psql(client, &get(name).await?, replica, &args).await,
    }
}

/// What the API server said (its message), or the client error.
fn said(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// Whether the resource's condition `kind` is True, with its reason and message.
fn condition<'a>(st: &'a PostgresClusterStatus, kind: &str) -> Option<(bool, &'a str, &'a str)> {
    let c = st.conditions.iter().find(|c| c.type_ == kind)?;
    Some((c.status == "True", &c.reason, &c.message))
}

/// `status.plan` as numbered steps (done ones ticked), or that none runs; a refusal after it.
fn plan_text(st: &PostgresClusterStatus) -> String {
    let mut out = String::new();
    for (i, s) in st.plan.iter().enumerate() {
        let done = if s.done { "done" } else { "    " };
        let mark = if s.disruptive { "  [disruptive]" } else { "" };
        out.push_str(&format!("{done} {:>2}. {}{mark}\n", i + 1, s.description));
    }
    if st.plan.is_empty() {
        out.push_str("No topology change is running.\n");
    }
    if let Some((true, "TopologyRefused", why)) = condition(st, "Stalled") {
        out.push_str(&format!("REFUSED: {why}\n"));
    }
    out
}

fn status(pgc: &PostgresCluster, output: Format) -> Result<bool, String> {
    let st = pgc.status.clone().unwrap_or_default();
    let ready = condition(&st, "Ready").is_some_and(|(t, _, _)| t);
    match output {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&st).map_err(|e| e.to_string())?
        ),
        Format::Yaml => print!("{}", crate::to_yaml(&st).map_err(|e| e.to_string())?),
        Format::Text => print!("{}", status_text(pgc, &st)),
    }
    Ok(ready)
}

/// The header (name, Ready, primary, identity), `pgmetal status`'s table with Degraded's and
/// Stalled's messages as the problems, then the last failover.
fn status_text(pgc: &PostgresCluster, st: &PostgresClusterStatus) -> String {
    let mut s = String::new();
    let name = format!(
        "{}/{}",
        pgc.metadata.namespace.as_deref().unwrap_or_default(),
        pgc.metadata.name.as_deref().unwrap_or_default()
    );
    let ready = condition(st, "Ready").map_or("Ready unknown".into(), |(t, reason, _)| {
        format!("Ready={} ({reason})", if t { "True" } else { "False" })
    });
    let _ = writeln!(
        s,
        "CLUSTER {name}  {ready}  primary {}  system {}\n",
        st.primary.as_deref().unwrap_or("-"),
        st.system_identifier.as_deref().unwrap_or("-")
    );
    let problems: Vec<String> = ["Stalled", "Degraded"]
        .iter()
        .filter_map(|k| condition(st, k).filter(|(t, _, _)| *t))
        .map(|(_, reason, message)| format!("{reason}: {message}"))
        .collect();
    s.push_str(&table::status(st, &problems));
    if let Some(f) = &st.last_failover {
        let _ = writeln!(
            s,
            "LAST FAILOVER {} from {} to {}, writes unavailable {} s",
            f.at.as_ref().map_or("-".into(), |t| t.0.to_string()),
            f.from,
            f.to,
            f.writes_unavailable_seconds
                .map_or("-".into(), |v| v.to_string())
        );
    }
    s
}

/// The spec edit of a switchover to `host`: `host` becomes the primary, the old primary takes
/// its place among the replicas.
fn switched(pgc: &PostgresCluster, host: &str) -> Result<serde_json::Value, String> {
    let pg = &pgc.spec.postgres;
    if pg.primary == host {
        return Err(format!("{host} is already spec.postgres.primary"));
    }
    if !pg.replicas.iter().any(|r| r == host) {
        return Err(format!(
            "{host} is not one of spec.postgres.replicas [{}]",
            pg.replicas.join(", ")
        ));
    }
    let replicas: Vec<&str> = pg
        .replicas
        .iter()
        .map(|r| if r == host { pg.primary.as_str() } else { r })
        .collect();
    Ok(serde_json::json!({"spec": {"postgres": {"primary": host, "replicas": replicas}}}))
}

/// The GitOps tool that manages `pgc`'s spec, if any (from its managedFields).
fn gitops_manager(pgc: &PostgresCluster) -> Option<String> {
    let fields = pgc.metadata.managed_fields.as_deref().unwrap_or_default();
    fields
        .iter()
        .filter_map(|f| f.manager.as_deref())
        .find(|m| GITOPS_MANAGERS.iter().any(|g| m.starts_with(g)))
        .map(String::from)
}

/// A JSON merge patch of `name`, as the plugin's field manager.
async fn merge(
    clusters: &Api<PostgresCluster>,
    name: &str,
    patch: &serde_json::Value,
) -> Result<(), String> {
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    clusters
        .patch(name, &params, &Patch::Merge(patch))
        .await
        .map(drop)
        .map_err(|e| format!("patching {name}: {}", said(&e)))
}

/// Sets the request annotation `key` to `value` (see [`crate::engine::requests`]).
async fn request(
    clusters: &Api<PostgresCluster>,
    pgc: &PostgresCluster,
    annotations: &[(&str, &str)],
) -> Result<bool, String> {
    let name = pgc.metadata.name.clone().unwrap_or_default();
    let keys: Vec<&str> = annotations.iter().map(|(k, _)| *k).collect();
    if let Some(tool) = gitops_manager(pgc) {
        eprintln!(
            "warning: {name} is managed by {tool}: put the annotations {} in its repository \
             too, or a sync that prunes annotations removes them",
            keys.join(", ")
        );
    }
    let map: serde_json::Map<String, serde_json::Value> = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
        .collect();
    let patch = serde_json::json!({"metadata": {"annotations": map}});
    merge(clusters, &name, &patch).await?;
    for (key, value) in annotations {
        println!("{key}: {value}");
    }
    println!(
        "requested: status.requests says when it is carried out (watch: kubectl get pgc {name} -w)"
    );
    Ok(true)
}

async fn switchover(
    clusters: &Api<PostgresCluster>,
    pgc: &PostgresCluster,
    host: &str,
) -> Result<bool, String> {
    let patch = switched(pgc, host)?;
    let name = pgc.metadata.name.clone().unwrap_or_default();
    if let Some(tool) = gitops_manager(pgc) {
        eprintln!(
            "warning: {name} is managed by {tool}: change spec.postgres.primary in its \
             repository too, or the next sync reverts this switchover"
        );
    }
    merge(clusters, &name, &patch).await?;
    println!(
        "switchover to {host} requested: the operator switches once {host} is a streaming \
         replica within maximumLagOnFailover (watch: kubectl get pgc {name} -w)"
    );
    Ok(true)
}

/// The superuser password: the Secret the spec names, or the generated one.
async fn superuser_password(client: kube::Client, pgc: &PostgresCluster) -> Result<String, String> {
    let ns = pgc.metadata.namespace.clone().unwrap_or_default();
    let name = pgc.metadata.name.clone().unwrap_or_default();
    let (secret, key) = match &pgc.spec.postgres.superuser.password_secret {
        Some(r) => (r.name.clone(), r.key.clone()),
        None => (
            crate::controller::dereference::passwords_secret_name(&name),
            "superuser".to_string(),
        ),
    };
    let bytes = secret_key(client, &ns, &secret, &key).await?;
    String::from_utf8(bytes).map_err(|_| format!("secret {ns}/{secret} key {key}: not UTF-8"))
}

/// The value of `key` in the Secret `ns/name`.
async fn secret_key(
    client: kube::Client,
    ns: &str,
    name: &str,
    key: &str,
) -> Result<Vec<u8>, String> {
    let secrets: Api<Secret> = Api::namespaced(client, ns);
    let s = secrets
        .get(name)
        .await
        .map_err(|e| format!("secret {ns}/{name}: {}", said(&e)))?;
    s.data
        .and_then(|mut d| d.remove(key))
        .map(|b| b.0)
        .ok_or_else(|| format!("secret {ns}/{name} has no key {key}"))
}

async fn psql(
    client: kube::Client,
    pgc: &PostgresCluster,
    replica: bool,
    args: &[String],
) -> Result<bool, String> {
    let spec = &pgc.spec;
    let Some(lb) = spec.haproxy.hosts.first() else {
        return Err("the cluster has no HAProxy hosts: connect to status.primary directly".into());
    };
    let port = match replica {
        true => spec.haproxy.replica_port,
        false => spec.haproxy.primary_port,
    };
    let password = superuser_password(client.clone(), pgc).await?;
    let conninfo = format!(
        "host={lb} port={port} user={} dbname=postgres",
        spec.postgres.superuser.name
    );
    let mut cmd = std::process::Command::new("psql");
    cmd.arg(conninfo).args(args).env("PGPASSWORD", password);
    let ca = match spec.tls.enabled() {
        true => Some(ca_file(client, pgc).await?),
        false => None,
    };
    if let Some(ca) = &ca {
        cmd.env("PGSSLMODE", "verify-full").env("PGSSLROOTCERT", ca);
    }
    let status = cmd
        .status()
        .map_err(|e| format!("psql: {e} (is the PostgreSQL client installed?)"));
    if let Some(ca) = ca {
        let _ = std::fs::remove_file(ca);
    }
    Ok(status?.success())
}

/// The cluster's CA certificate (`<cluster>-ca`, key `ca.crt`; with `tls.mode: Provided` the
/// `tls.crt` of `tls.caSecret`) in a new private temporary file, for psql's `sslrootcert`: the
/// server is verified by name, through HAProxy.
async fn ca_file(
    client: kube::Client,
    pgc: &PostgresCluster,
) -> Result<std::path::PathBuf, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let ns = pgc.metadata.namespace.clone().unwrap_or_default();
    let (name, key) = match &pgc.spec.tls.ca_secret {
        Some(provided) => (provided.clone(), "tls.crt"),
        None => {
            let cluster = pgc.metadata.name.clone().unwrap_or_default();
            let name = crate::controller::dereference::ca_secret_name(&cluster);
            (name, "ca.crt")
        }
    };
    let ca = secret_key(client, &ns, &name, key).await?;
    let suffix = crate::cli::secrets_file::generate_password();
    let path = std::env::temp_dir().join(format!("pgmetal-ca-{}.crt", &suffix[..12]));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(&ca)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> PostgresCluster {
        serde_saphyr::from_str(
            "apiVersion: pgmetal.io/v1alpha1\nkind: PostgresCluster\nmetadata: {name: pg, namespace: db}\nspec:\n  ssh: {}\n  postgres: {primary: a, replicas: [b, c]}\n  etcd: {hosts: [a, b, c]}\n",
        )
        .unwrap()
    }

    #[test]
    fn a_switchover_swaps_the_primary_with_the_replica_in_its_place() {
        let patch = switched(&cluster(), "c").unwrap();
        assert_eq!(
            patch,
            serde_json::json!({"spec": {"postgres": {"primary": "c", "replicas": ["b", "a"]}}})
        );
        assert!(switched(&cluster(), "a").unwrap_err().contains("already"));
        assert!(
            switched(&cluster(), "z")
                .unwrap_err()
                .contains("not one of")
        );
    }

    #[test]
    fn the_plan_lists_steps_and_a_refusal() {
        let mut st = PostgresClusterStatus::default();
        assert_eq!(plan_text(&st), "No topology change is running.\n");
        st.plan = vec![
            crate::api::PlannedStep {
                description: "adding etcd member e".into(),
                disruptive: true,
                done: true,
            },
            crate::api::PlannedStep {
                description: "adding replica e".into(),
                disruptive: false,
                done: false,
            },
        ];
        assert_eq!(
            plan_text(&st),
            "done  1. adding etcd member e  [disruptive]\n      2. adding replica e\n"
        );
    }

    #[test]
    fn gitops_managers_are_recognised() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
        let mut pgc = cluster();
        let entry = |m: &str| ManagedFieldsEntry {
            manager: Some(m.into()),
            ..Default::default()
        };
        pgc.metadata.managed_fields = Some(vec![entry("kubectl-client-side-apply")]);
        assert_eq!(gitops_manager(&pgc), None);
        pgc.metadata.managed_fields = Some(vec![entry("pgmetal"), entry("kustomize-controller")]);
        assert_eq!(
            gitops_manager(&pgc).as_deref(),
            Some("kustomize-controller")
        );
    }
}
