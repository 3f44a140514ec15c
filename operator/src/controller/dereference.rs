//! Dereference: read the Secrets a PostgresCluster names (SSH key, known_hosts, passwords) and
//! generate the password Secret `<cluster>-passwords` and the CA Secret `<cluster>-ca`, owned by
//! the cluster, when they are missing.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};

use crate::api::{PostgresCluster, SecretKeyRef, TlsMode};
use crate::cli::secrets_file::generate_password;
use crate::model::ClusterSecrets;
use crate::tls::{CertKey, KeyPem};

/// What the Secrets hold, ready for the engine. Never logged.
pub struct Resolved {
    /// OpenSSH private key text.
    pub private_key: String,
    /// known_hosts text, when a Secret is named.
    pub known_hosts: Option<String>,
    /// The passwords.
    pub secrets: ClusterSecrets,
    /// The cluster's CA (`spec.tls` Managed).
    pub ca: Option<CertKey>,
    /// Fingerprints of former CAs read where only pgmetal writes: the CA Secret pgmetal made
    /// (`<cluster>-ca`), while the cluster uses another.
    pub pins: Vec<String>,
}

/// A Secret problem a person must fix; becomes the Ready condition's reason and message.
#[derive(Debug, thiserror::Error)]
pub enum DerefError {
    /// The cluster names no Secret where one is required (the API server also requires it).
    #[error("{field} is not set: name the Secret that holds it")]
    Unset { field: String },
    /// The Secret does not exist.
    #[error("Secret {namespace}/{name} (for {field}) not found: create it")]
    Missing {
        namespace: String,
        name: String,
        field: String,
    },
    /// The Secret exists but lacks the key or it is not UTF-8.
    #[error("Secret {namespace}/{name} has no usable key {key:?} (for {field})")]
    NoKey {
        namespace: String,
        name: String,
        key: String,
        field: String,
    },
    /// The cluster's CA could not be made, or the one given cannot issue certificates.
    #[error("the CA of Secret {name}: {reason}")]
    Ca { name: String, reason: String },
    /// The API call failed.
    #[error("reading Secret {name}: {source}")]
    Kube { name: String, source: kube::Error },
}

/// The name of the generated password Secret.
pub fn passwords_secret_name(cluster: &str) -> String {
    format!("{cluster}-passwords")
}

/// The password roles and their keys in the generated Secret: the first four may instead
/// come from Secrets the spec names; `haproxyStats` (HAProxy's statistics page) is always
/// generated.
const ROLES: [&str; 5] = [
    "superuser",
    "replication",
    "rewind",
    "restapi",
    "haproxyStats",
];

async fn read(
    api: &Api<Secret>,
    ns: &str,
    r: &SecretKeyRef,
    field: &str,
) -> Result<String, DerefError> {
    let secret = api
        .get_opt(&r.name)
        .await
        .map_err(|source| DerefError::Kube {
            name: r.name.clone(),
            source,
        })?;
    let secret = secret.ok_or_else(|| DerefError::Missing {
        namespace: ns.into(),
        name: r.name.clone(),
        field: field.into(),
    })?;
    key(&secret, &r.key).ok_or_else(|| DerefError::NoKey {
        namespace: ns.into(),
        name: r.name.clone(),
        key: r.key.clone(),
        field: field.into(),
    })
}

fn key(secret: &Secret, key: &str) -> Option<String> {
    let from_data = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|b| String::from_utf8(b.0.clone()).ok());
    from_data.or_else(|| {
        secret
            .string_data
            .as_ref()
            .and_then(|d| d.get(key).cloned())
    })
}

/// Reads everything the cluster needs; creates `<cluster>-passwords` when a password has no reference.
pub async fn resolve(client: &kube::Client, pgc: &PostgresCluster) -> Result<Resolved, DerefError> {
    let ns = pgc.namespace().unwrap_or_else(|| "default".into());
    let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let s = &pgc.spec;
    const KEY_FIELD: &str = "spec.ssh.privateKeySecret";
    let key_ref = s.ssh.private_key_secret.as_ref().ok_or(DerefError::Unset {
        field: KEY_FIELD.into(),
    })?;
    let private_key = read(&api, &ns, key_ref, KEY_FIELD).await?;
    let known_hosts = match &s.ssh.known_hosts_secret {
        Some(r) => Some(read(&api, &ns, r, "spec.ssh.knownHostsSecret").await?),
        None => None,
    };
    let refs = [
        &s.postgres.superuser.password_secret,
        &s.postgres.replication.password_secret,
        &s.postgres.rewind.password_secret,
        &s.patroni.rest_api_password_secret,
        &None,
    ];
    let needed: Vec<&str> = ROLES
        .iter()
        .zip(refs)
        .filter(|(_, r)| r.is_none())
        .map(|(role, _)| *role)
        .collect();
    let generated = generated(&api, pgc, &needed).await?;
    let mut values = Vec::new();
    for (role, r) in ROLES.iter().zip(refs) {
        let v = match r {
            Some(r) => read(&api, &ns, r, &format!("password of {role}")).await?,
            None => generated
                .get(*role)
                .cloned()
                .ok_or_else(|| DerefError::NoKey {
                    namespace: ns.clone(),
                    name: passwords_secret_name(&pgc.name_any()),
                    key: role.to_string(),
                    field: format!("password of {role}"),
                })?,
        };
        values.push(v);
    }
    let [superuser, replication, rewind, restapi, haproxy_stats]: [String; 5] =
        values.try_into().map_err(|_| DerefError::NoKey {
            namespace: ns.clone(),
            name: passwords_secret_name(&pgc.name_any()),
            key: "*".into(),
            field: "passwords".into(),
        })?;
    let (ca, pins) = match (s.tls.mode, s.tls.ca_secret.as_deref()) {
        (TlsMode::Provided, Some(name)) => {
            // pgmetal's own CA, if the cluster used one before: trusted while hosts hold it.
            let own = existing_ca(&api, pgc).await;
            let pins = own.and_then(|c| crate::tls::fingerprint(&c.cert));
            (Some(provided_ca(&api, &ns, name).await?), pins)
        }
        (TlsMode::Disabled, _) => {
            // Not created, but read when there: a cluster moving back to plain text is read
            // over HTTPS until it has moved.
            (existing_ca(&api, pgc).await, None)
        }
        _ => (Some(cluster_ca(&api, pgc).await?), None),
    };
    let pins = pins.into_iter().collect();
    let s3 = s3_credentials(&api, &ns, s).await?;
    Ok(Resolved {
        private_key,
        known_hosts,
        ca,
        pins,
        secrets: ClusterSecrets {
            superuser,
            replication,
            rewind,
            restapi,
            haproxy_stats,
            s3,
        },
    })
}

/// The S3 credentials the spec names (`backup.repository.s3`, `bootstrap.recovery.s3`), by
/// Secret name: the keys `accessKeyId` and `secretAccessKey` of each.
async fn s3_credentials(
    api: &Api<Secret>,
    ns: &str,
    s: &crate::api::PostgresClusterSpec,
) -> Result<BTreeMap<String, crate::model::S3Credentials>, DerefError> {
    let named = [
        (
            "spec.backup.repository.s3.credentialsSecret",
            crate::render::backup::s3(s),
        ),
        (
            "spec.bootstrap.recovery.s3.credentialsSecret",
            crate::render::backup::recovery(s).and_then(|r| r.s3.as_ref()),
        ),
    ];
    let mut out = BTreeMap::new();
    for (field, s3) in named {
        let Some(s3) = s3 else { continue };
        let name = &s3.credentials_secret;
        if out.contains_key(name) {
            continue;
        }
        let at = |key: &str| SecretKeyRef {
            name: name.clone(),
            key: key.into(),
        };
        let creds = crate::model::S3Credentials {
            access_key_id: read(api, ns, &at("accessKeyId"), field).await?,
            secret_access_key: read(api, ns, &at("secretAccessKey"), field).await?,
        };
        out.insert(name.clone(), creds);
    }
    Ok(out)
}

/// The generated password Secret with the `needed` roles (those the spec names no Secret for,
/// and `haproxyStats`), created (owned by the cluster) on first use; a needed key it lacks is
/// added. Existing keys are never replaced: the passwords of a running cluster stay.
async fn generated(
    api: &Api<Secret>,
    pgc: &PostgresCluster,
    needed: &[&str],
) -> Result<BTreeMap<String, String>, DerefError> {
    let name = passwords_secret_name(&pgc.name_any());
    let make = || {
        Ok(needed
            .iter()
            .map(|r| (r.to_string(), generate_password()))
            .collect())
    };
    let mut s = get_or_create(api, pgc, (&name, "Opaque"), make).await?;
    let missing: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|r| key(&s, r).is_none())
        .collect();
    if !missing.is_empty() {
        s = add_keys(api, &s, &missing).await?;
    }
    Ok(needed
        .iter()
        .filter_map(|r| key(&s, r).map(|v| (r.to_string(), v)))
        .collect())
}

/// Adds a generated password for each of `missing` (roles a newer pgmetal knows) to the
/// generated Secret `s`. The patch carries the resourceVersion it read: if anyone changed the
/// Secret since, it is refused (409) and the Secret is read again, so no key is ever replaced.
async fn add_keys(api: &Api<Secret>, s: &Secret, missing: &[&str]) -> Result<Secret, DerefError> {
    let name = s.name_any();
    let err = |source| DerefError::Kube {
        name: name.clone(),
        source,
    };
    let data: BTreeMap<&str, ByteString> = missing
        .iter()
        .map(|r| (*r, ByteString(generate_password().into_bytes())))
        .collect();
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": s.metadata.resource_version},
        "data": data,
    });
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(s) => Ok(s),
        Err(kube::Error::Api(e)) if e.code == 409 => api.get(&name).await.map_err(err),
        Err(e) => Err(err(e)),
    }
}

/// The name of the Secret holding the cluster's CA (`spec.tls` Managed).
pub fn ca_secret_name(cluster: &str) -> String {
    format!("{cluster}-ca")
}

/// The cluster's CA from `<cluster>-ca`, created (owned by the cluster) on first use in the
/// layout cert-manager reads for a CA issuer: `tls.crt` and `tls.key` the CA itself, `ca.crt`
/// the certificate clients trust. An existing CA is never replaced.
async fn cluster_ca(api: &Api<Secret>, pgc: &PostgresCluster) -> Result<CertKey, DerefError> {
    let name = ca_secret_name(&pgc.name_any());
    let make = || {
        let now = time::OffsetDateTime::now_utc();
        let ca =
            crate::tls::new_ca(&pgc.name_any(), now, crate::tls::CA_LIFETIME).map_err(|e| {
                DerefError::Ca {
                    name: name.clone(),
                    reason: e.to_string(),
                }
            })?;
        Ok(BTreeMap::from([
            ("tls.crt".to_string(), ca.cert.clone()),
            ("tls.key".to_string(), ca.key.0),
            ("ca.crt".to_string(), ca.cert),
        ]))
    };
    let s = get_or_create(api, pgc, (&name, "kubernetes.io/tls"), make).await?;
    let ns = pgc.namespace().unwrap_or_else(|| "default".into());
    let need = |k: &str| {
        key(&s, k).ok_or_else(|| DerefError::NoKey {
            namespace: ns.clone(),
            name: name.clone(),
            key: k.into(),
            field: "spec.tls".into(),
        })
    };
    let ca = CertKey {
        cert: need("tls.crt")?,
        key: KeyPem(need("tls.key")?),
    };
    // An existing Secret of that name is checked like a provided CA before it signs anything.
    crate::tls::check_ca(&ca).map_err(|e| DerefError::Ca {
        name: name.clone(),
        reason: e.to_string(),
    })?;
    Ok(ca)
}

/// The CA someone else keeps in the Secret `name` (`spec.tls.mode: Provided`): `tls.crt` and
/// `tls.key`, checked to be a self-signed CA and its key.
async fn provided_ca(api: &Api<Secret>, ns: &str, name: &str) -> Result<CertKey, DerefError> {
    const FIELD: &str = "spec.tls.caSecret";
    let r = |key: &str| SecretKeyRef {
        name: name.into(),
        key: key.into(),
    };
    let ca = CertKey {
        cert: read(api, ns, &r("tls.crt"), FIELD).await?,
        key: KeyPem(read(api, ns, &r("tls.key"), FIELD).await?),
    };
    crate::tls::check_ca(&ca).map_err(|e| DerefError::Ca {
        name: name.into(),
        reason: e.to_string(),
    })?;
    Ok(ca)
}

/// The cluster's CA when its Secret exists and holds it.
async fn existing_ca(api: &Api<Secret>, pgc: &PostgresCluster) -> Option<CertKey> {
    let s = api.get_opt(&ca_secret_name(&pgc.name_any())).await.ok()??;
    Some(CertKey {
        cert: key(&s, "tls.crt")?,
        key: KeyPem(key(&s, "tls.key")?),
    })
}

/// The Secret `name` as stored, or created with `make()`'s values (labelled, owned by the
/// cluster) when missing. When another reconcile created it first, that one is used.
async fn get_or_create(
    api: &Api<Secret>,
    pgc: &PostgresCluster,
    (name, type_): (&str, &str),
    make: impl FnOnce() -> Result<BTreeMap<String, String>, DerefError>,
) -> Result<Secret, DerefError> {
    let err = |source| DerefError::Kube {
        name: name.to_string(),
        source,
    };
    if let Some(s) = api.get_opt(name).await.map_err(err)? {
        return Ok(s);
    }
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            owner_references: pgc.controller_owner_ref(&()).map(|o| vec![o]),
            labels: Some(BTreeMap::from([
                ("app.kubernetes.io/managed-by".into(), "pgmetal".into()),
                ("pgmetal.io/cluster".into(), pgc.name_any()),
            ])),
            ..Default::default()
        },
        type_: Some(type_.into()),
        data: Some(
            make()?
                .into_iter()
                .map(|(k, v)| (k, ByteString(v.into_bytes())))
                .collect(),
        ),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &secret).await {
        Ok(s) => Ok(s),
        Err(kube::Error::Api(e)) if e.code == 409 => api.get(name).await.map_err(err),
        Err(e) => Err(err(e)),
    }
}
