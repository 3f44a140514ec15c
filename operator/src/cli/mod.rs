//! The command line without Kubernetes: `pgmetal apply` and `pgmetal status` against a
//! cluster.yaml, the migration path from the Ansible playbook and patronictl.

mod identity;
pub mod kubectl;
pub mod progress;
pub mod secrets_file;
mod table;

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use crate::api::{PostgresCluster, TlsMode};
use crate::engine::{self, connect, etcd_api::EtcdClient, observe, patroni_api::PatroniApi};
use crate::exec::KnownHosts;
use crate::model::ClusterSecrets;

/// Output format.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// Human-readable text.
    Text,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// Options shared by `apply` and `status`.
#[derive(Args, Debug)]
pub struct Common {
    /// The PostgresCluster manifest.
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    /// Private key for SSH (OpenSSH format, unencrypted).
    #[arg(long, env = "PGMETAL_SSH_KEY")]
    pub ssh_key: PathBuf,
    /// known_hosts file with every host's key. Required: hosts are always verified.
    #[arg(long, env = "PGMETAL_KNOWN_HOSTS")]
    pub known_hosts: PathBuf,
    /// YAML map of passwords (superuser, replication, rewind, restapi); generated (0600) if
    /// missing and no host carries the cluster yet.
    #[arg(long, default_value = "pgmetal-secrets.yaml")]
    pub secrets: PathBuf,
    /// Create new passwords and a new CA although the hosts already carry this cluster: gives it
    /// a new identity (members and clients are reissued and must trust the new CA).
    #[arg(long)]
    pub new_secrets: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: Format,
}

/// Everything `apply`/`status` need, loaded and validated before touching any host.
pub struct Loaded {
    /// The validated resource.
    pub cluster: PostgresCluster,
    /// Passwords.
    pub secrets: ClusterSecrets,
    /// SSH settings.
    pub ssh: crate::exec::SshConfig,
    /// The cluster's CA (`spec.tls` Managed), beside the secrets file.
    pub ca: Option<crate::tls::CertKey>,
    /// The fingerprints of the CAs this cluster has used (see [`secrets_file::pins`]).
    pub pins: Vec<String>,
}

/// Reads and validates the manifest.
fn manifest(file: &Path) -> Result<PostgresCluster, String> {
    let text = read(file)?;
    let cluster: PostgresCluster =
        serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    crate::validate::validate(&cluster, None).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(cluster)
}

/// `pgmetal targets`: the cluster's Prometheus scrape targets as a file_sd document (the same
/// the operator publishes in `<cluster>-scrape-targets`), labelled with the manifest's name.
/// Reads only the manifest.
pub fn targets(file: &Path) -> Result<bool, String> {
    use kube::ResourceExt;
    let cluster = manifest(file)?;
    let groups = crate::render::scrape_targets(&cluster.spec, &cluster.name_any());
    print!("{}", crate::render::file_sd(&groups));
    Ok(true)
}

/// Reads and validates the manifest, secrets and SSH material.
/// The CA someone else keeps (`spec.tls.mode: Provided`), from the files beside the secrets
/// file, which the CLI never creates in this mode.
fn provided_ca(secrets: &Path) -> Result<crate::tls::CertKey, String> {
    let (crt, key) = secrets_file::ca_paths(secrets);
    let ca = secrets_file::load_ca(secrets).ok_or_else(|| {
        format!(
            "spec.tls.mode is Provided: put the CA's certificate at {} and its key at {}",
            crt.display(),
            key.display()
        )
    })?;
    crate::tls::check_ca(&ca).map_err(|e| format!("{}: {e}", crt.display()))?;
    Ok(ca)
}

pub async fn load(c: &Common) -> Result<Loaded, String> {
    let cluster = manifest(&c.file)?;
    let key = read(&c.ssh_key)?;
    let known = KnownHosts::parse(&read(&c.known_hosts)?);
    let ssh = connect::ssh_config(&cluster.spec.ssh, &key, known)
        .map_err(|e| format!("{}: {e}", c.ssh_key.display()))?;
    if !c.new_secrets && identity::would_create(&c.secrets, cluster.spec.tls.mode) {
        let name = cluster.metadata.name.as_deref().unwrap_or_default();
        identity::guard(&c.secrets, (name, &cluster.spec), &ssh).await?;
    }
    let (secrets, created) = secrets_file::load_or_create(&c.secrets)?;
    if created {
        eprintln!(
            "generated new passwords into {} (mode 0600): keep it safe",
            c.secrets.display()
        );
    }
    let ca = match cluster.spec.tls.mode {
        TlsMode::Provided => Some(provided_ca(&c.secrets)?),
        TlsMode::Managed => {
            let name = cluster.metadata.name.clone().unwrap_or_default();
            let (ca, created) = secrets_file::load_or_create_ca(&c.secrets, &name)?;
            if created {
                let (crt, key) = secrets_file::ca_paths(&c.secrets);
                eprintln!(
                    "created the cluster's CA: {} (give it to clients: sslrootcert) and {} (mode 0600): keep it safe",
                    crt.display(),
                    key.display()
                );
            }
            Some(ca)
        }
        TlsMode::Disabled => secrets_file::load_ca(&c.secrets),
    };
    let pins = secrets_file::pins(&c.secrets, ca.as_ref())?;
    Ok(Loaded {
        cluster,
        secrets,
        ssh,
        ca,
        pins,
    })
}

fn read(p: &Path) -> Result<String, String> {
    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// The spec's hosts and the former hosts recorded in etcd (see
/// [`engine::topology::recorded_hosts`]): whom a converge connects to.
async fn hosts_to_connect(
    spec: &crate::api::PostgresClusterSpec,
    ca: Option<&crate::tls::CertKey>,
) -> Vec<String> {
    let mut hosts = crate::render::all_hosts(spec);
    let etcd = EtcdClient::for_cluster(spec, ca);
    let recorded = engine::topology::recorded_hosts(&etcd, spec).await;
    for h in recorded {
        if !hosts.contains(&h) {
            hosts.push(h);
        }
    }
    hosts
}

/// The CLI's claim on hosts: the manifest's name.
fn owner(l: &Loaded) -> engine::claim::Owner {
    engine::claim::Owner {
        name: l.cluster.metadata.name.clone().unwrap_or_default(),
        uid: None,
    }
}

/// `pgmetal apply`: converge, print the report, succeed only when healthy.
pub async fn apply(c: &Common, quiet: bool) -> Result<bool, String> {
    let l = load(c).await?;
    let spec = &l.cluster.spec;
    let hosts = hosts_to_connect(spec, l.ca.as_ref()).await;
    let progress = progress::for_stderr(&hosts, quiet || c.output != Format::Text);
    progress.phase("connect");
    let connected = connect::connect_all(&hosts, &l.ssh, &Default::default()).await;
    let conns = connected.into_iter().map(|(h, c)| (h, c.conn)).collect();
    let asked = engine::requests::Asked::from_annotations(l.cluster.metadata.annotations.as_ref());
    let report = engine::Engine::new(
        (owner(&l), spec),
        (&l.secrets, l.ca.clone()),
        conns,
        &*progress,
    )
    .with_pins(l.pins.clone())
    .with_requests(asked)
    .converge()
    .await;
    drop(progress);
    match c.output {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        ),
        Format::Yaml => print!("{}", crate::to_yaml(&report).map_err(|e| e.to_string())?),
        Format::Text => print!("{}", table::summary(&report)),
    }
    Ok(report.healthy)
}

/// `pgmetal plan`: the steps `apply` would take against the live cluster, read-only (it reads
/// etcd, Patroni and the claims of former hosts; it writes nothing). Fails when refused.
pub async fn plan(c: &Common) -> Result<bool, String> {
    let l = load(c).await?;
    let spec = &l.cluster.spec;
    let named = crate::render::all_hosts(spec);
    let former: Vec<String> = hosts_to_connect(spec, l.ca.as_ref())
        .await
        .into_iter()
        .filter(|h| !named.contains(h))
        .collect();
    let connected = connect::connect_all(&former, &l.ssh, &Default::default()).await;
    let conns = connected.into_iter().map(|(h, c)| (h, c.conn)).collect();
    let progress = engine::Quiet;
    let planned = engine::Engine::new(
        (owner(&l), spec),
        (&l.secrets, l.ca.clone()),
        conns,
        &progress,
    )
    .with_pins(l.pins.clone())
    .plan()
    .await;
    let out = match &planned {
        Ok(steps) => serde_json::json!({"steps": steps}),
        Err(refused) => serde_json::json!({"refused": refused.to_string()}),
    };
    match c.output {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
        ),
        Format::Yaml => print!("{}", crate::to_yaml(&out).map_err(|e| e.to_string())?),
        Format::Text => print!("{}", table::plan(&planned)),
    }
    Ok(planned.is_ok())
}

/// `status.backup`: a look at the repository host and the primary over SSH, when backups
/// are on.
async fn backups(
    l: &Loaded,
    status: &crate::api::PostgresClusterStatus,
) -> Option<crate::api::BackupStatus> {
    let spec = &l.cluster.spec;
    spec.backup.as_ref()?;
    let hosts = engine::backup_look::hosts(spec, status.primary.as_deref());
    let conns = connect::connect_all(&hosts, &l.ssh, &Default::default()).await;
    engine::backup_look::look_through(spec, conns, status).await
}

/// `pgmetal status`: what `patronictl list` and `etcdctl member list` show, plus routing.
pub async fn status(c: &Common) -> Result<bool, String> {
    let l = load(c).await?;
    let spec = &l.cluster.spec;
    let api = PatroniApi::for_cluster(spec, &l.secrets, l.ca.as_ref());
    let obs = observe::observe(spec, &api, l.ca.as_ref(), &l.secrets.haproxy_stats).await;
    let problems = observe::problems(spec, &obs);
    let mut status = crate::status::from_observation(spec, &obs);
    status.backup = backups(&l, &status).await;
    let out =
        serde_json::json!({"healthy": problems.is_empty(), "problems": problems, "status": status});
    match c.output {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
        ),
        Format::Yaml => print!("{}", crate::to_yaml(&out).map_err(|e| e.to_string())?),
        Format::Text => print!("{}", table::status(&status, &problems)),
    }
    Ok(problems.is_empty())
}
