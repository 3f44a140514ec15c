//! Dereference: read the Secrets a PostgresCluster names (SSH key, known_hosts, passwords) and
//! generate the password Secret `<cluster>-passwords`, owned by the cluster, when it is missing.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Resource, ResourceExt};

use crate::api::{PostgresCluster, SecretKeyRef};
use crate::cli::secrets_file::generate_password;
use crate::model::ClusterSecrets;

/// What the Secrets hold, ready for the engine. Never logged.
pub struct Resolved {
    /// OpenSSH private key text.
    pub private_key: String,
    /// known_hosts text, when a Secret is named.
    pub known_hosts: Option<String>,
    /// The passwords.
    pub secrets: ClusterSecrets,
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
    /// The API call failed.
    #[error("reading Secret {name}: {source}")]
    Kube { name: String, source: kube::Error },
}

/// The name of the generated password Secret.
pub fn passwords_secret_name(cluster: &str) -> String {
    format!("{cluster}-passwords")
}

/// The password roles and their keys in the generated Secret.
const ROLES: [&str; 4] = ["superuser", "replication", "rewind", "restapi"];

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
    ];
    let generated = if refs.iter().any(|r| r.is_none()) {
        Some(generated(&api, pgc).await?)
    } else {
        None
    };
    let mut values = Vec::new();
    for (role, r) in ROLES.iter().zip(refs) {
        let v = match r {
            Some(r) => read(&api, &ns, r, &format!("password of {role}")).await?,
            None => generated
                .as_ref()
                .and_then(|g| g.get(*role).cloned())
                .ok_or_else(|| DerefError::NoKey {
                    namespace: ns.clone(),
                    name: passwords_secret_name(&pgc.name_any()),
                    key: role.to_string(),
                    field: format!("password of {role}"),
                })?,
        };
        values.push(v);
    }
    let [superuser, replication, rewind, restapi]: [String; 4] =
        values.try_into().map_err(|_| DerefError::NoKey {
            namespace: ns.clone(),
            name: passwords_secret_name(&pgc.name_any()),
            key: "*".into(),
            field: "passwords".into(),
        })?;
    Ok(Resolved {
        private_key,
        known_hosts,
        secrets: ClusterSecrets {
            superuser,
            replication,
            rewind,
            restapi,
        },
    })
}

/// The generated password Secret, created (owned by the cluster) on first use. Existing keys
/// are never replaced: the passwords of a running cluster stay.
async fn generated(
    api: &Api<Secret>,
    pgc: &PostgresCluster,
) -> Result<BTreeMap<String, String>, DerefError> {
    let name = passwords_secret_name(&pgc.name_any());
    let err = |source| DerefError::Kube {
        name: name.clone(),
        source,
    };
    if let Some(s) = api.get_opt(&name).await.map_err(err)? {
        return Ok(ROLES
            .iter()
            .filter_map(|r| key(&s, r).map(|v| (r.to_string(), v)))
            .collect());
    }
    let values: BTreeMap<String, String> = ROLES
        .iter()
        .map(|r| (r.to_string(), generate_password()))
        .collect();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            owner_references: pgc.controller_owner_ref(&()).map(|o| vec![o]),
            labels: Some(BTreeMap::from([
                ("app.kubernetes.io/managed-by".into(), "pgmetal".into()),
                ("pgmetal.io/cluster".into(), pgc.name_any()),
            ])),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(
            values
                .iter()
                .map(|(k, v)| (k.clone(), ByteString(v.clone().into_bytes())))
                .collect(),
        ),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(values),
        // Another reconcile created it first: use what is stored.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let s = api.get(&name).await.map_err(err)?;
            Ok(ROLES
                .iter()
                .filter_map(|r| key(&s, r).map(|v| (r.to_string(), v)))
                .collect())
        }
        Err(e) => Err(err(e)),
    }
}
