//! A small client for Patroni's REST API: cluster view, dynamic configuration, restart, switchover.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;

use super::capped;
use super::rest_tls::{self, ClientTls, Scheme};
use crate::api::PostgresClusterSpec;
use crate::model::ClusterSecrets;
use crate::render::host_port;
use crate::tls::CertKey;

/// `e` and its causes, one after the other (reqwest's own text leaves out why a TLS handshake
/// or a connection failed).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

pub use super::patroni_view::{ClusterMember, ClusterView, Member, NodeStatus, Role, State};

/// Why a REST call failed.
#[derive(Debug, thiserror::Error)]
#[error("Patroni REST API on {host}: {message}")]
pub struct ApiError {
    /// The host called.
    pub host: String,
    /// What went wrong.
    pub message: String,
    /// The HTTP status, where the member answered one.
    pub status: Option<u16>,
}

impl ApiError {
    /// Patroni's `409 Conflict`: the DCS changed between its read and its write (a stale cache);
    /// the same request may succeed from a fresh read.
    pub fn is_conflict(&self) -> bool {
        self.status == Some(409)
    }
}

/// What pgmetal asks of one member through its REST API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberAction {
    /// Restart PostgreSQL only if a changed parameter needs it (`POST /restart`).
    RestartPending,
    /// Restart PostgreSQL (`POST /restart`).
    Restart,
    /// Throw away a replica's data and take a new basebackup (`POST /reinitialize`); Patroni
    /// refuses it on the leader.
    Reinitialize,
}

impl MemberAction {
    /// For people: the step's name.
    pub fn label(self) -> &'static str {
        match self {
            MemberAction::RestartPending => "restart for pending parameters",
            MemberAction::Restart => "restart postgresql",
            MemberAction::Reinitialize => "reinitialize from a basebackup",
        }
    }

    /// The path and body of the request.
    pub fn request(self) -> (&'static str, Value) {
        match self {
            MemberAction::RestartPending => {
                ("/restart", serde_json::json!({"restart_pending": true}))
            }
            MemberAction::Restart => ("/restart", serde_json::json!({})),
            MemberAction::Reinitialize => ("/reinitialize", serde_json::json!({})),
        }
    }
}

/// A client for the REST API of every member of one cluster.
#[derive(Clone)]
pub struct PatroniApi {
    http: Arc<RwLock<reqwest::Client>>,
    /// pgmetal's CA and client identity, when `spec.tls` gave a CA.
    tls: Option<ClientTls>,
    port: u16,
    password: String,
    /// The scheme the cluster's spec asks for: HTTPS when `spec.tls` is on.
    scheme: Scheme,
    /// The hosts the password may be sent to (see [`PatroniApi::trusting`]).
    trusted: std::collections::BTreeSet<String>,
    /// Why the cluster's CA could not issue pgmetal's client certificate: every call then fails
    /// with it (never plain text instead).
    unusable: Option<String>,
    /// The hosts whose Patroni configuration, read over SSH, says its REST API serves plain
    /// text (or was changed and not loaded yet): the only ones a read may repeat in plain text.
    plain: super::schemes::PlainHosts,
}

impl PatroniApi {
    /// A plain-HTTP client using `port` and the REST password (user `patroni`) for unsafe
    /// calls, which it makes to no host until told which ones to trust.
    pub fn new(port: u16, password: String) -> Self {
        Self {
            http: Arc::new(RwLock::new(rest_tls::client(None, &[]))),
            tls: None,
            port,
            password,
            scheme: Scheme::Http,
            trusted: Default::default(),
            unusable: None,
            plain: Default::default(),
        }
    }

    /// The client for a cluster: HTTPS with pgmetal's client certificate from `ca` when
    /// `spec.tls` is on, plain HTTP when it is off. The CA is kept as the root either way, so
    /// that reads still reach members that have not moved back to plain text yet. A CA that
    /// cannot sign (a damaged Secret) makes every call fail with the reason: never plain text.
    pub fn for_cluster(
        spec: &PostgresClusterSpec,
        secrets: &ClusterSecrets,
        ca: Option<&CertKey>,
    ) -> Self {
        let issued = ca.map(|ca| ClientTls::issue(ca, time::OffsetDateTime::now_utc()));
        let (tls, unusable) = match issued.transpose() {
            Ok(tls) => (tls, None),
            Err(e) => {
                let why =
                    format!("the cluster's CA cannot issue pgmetal's client certificate: {e}");
                (None, Some(why))
            }
        };
        Self {
            http: Arc::new(RwLock::new(rest_tls::client(tls.as_ref(), &[]))),
            tls,
            scheme: Scheme::when(spec.tls.enabled()),
            unusable,
            ..Self::new(spec.patroni.rest_api_port, secrets.restapi.clone())
        }
    }

    /// Fails with the reason the client cannot be used, if there is one.
    fn usable(&self, host: &str) -> Result<(), ApiError> {
        self.unusable
            .as_ref()
            .map_or(Ok(()), |why| Err(Self::err(host, why)))
    }

    /// The hosts whose SSH host key has been verified: the only ones the password is sent to.
    /// An unsafe call to any other host fails before a connection is made, so a machine that
    /// took over a member's address never learns the password that allows switchovers.
    pub fn trusting(mut self, hosts: impl IntoIterator<Item = String>) -> Self {
        self.trusted = hosts.into_iter().collect();
        self
    }

    /// Also trusts the CA certificates `roots` (PEM): those the hosts still serve certificates
    /// from while a converge replaces the cluster's CA (a `Provided` CA rotated), so that the
    /// members stay readable until each has its new certificate.
    pub fn trust_also(&self, roots: &[String]) {
        let client = rest_tls::client(self.tls.as_ref(), roots);
        if let Ok(mut http) = self.http.write() {
            *http = client;
        }
    }

    /// Allows reads from `host` in plain text: its Patroni configuration, read over SSH, says
    /// its REST API serves plain text (a cluster moving to TLS).
    pub fn allow_plain(&self, host: &str) {
        self.plain.allow(host);
    }

    /// The HTTP client in use.
    fn http(&self) -> reqwest::Client {
        self.http.read().map(|h| h.clone()).unwrap_or_default()
    }

    fn url(&self, scheme: Scheme, host: &str, path: &str) -> String {
        format!("{}://{}{path}", scheme.as_str(), host_port(host, self.port))
    }

    pub(crate) fn err(host: &str, e: impl std::fmt::Display) -> ApiError {
        ApiError {
            host: host.into(),
            message: e.to_string(),
            status: None,
        }
    }

    /// `GET path` from `host`, decoded from JSON, and the scheme that answered: the cluster's,
    /// or the other one when the member does not speak the cluster's (not moved yet, or moved
    /// back; see [`rest_tls::speaks_other_scheme`]) and may speak it: plain text only where the
    /// host's configuration says so ([`Self::allow_plain`]), so that non-TLS bytes from an
    /// on-path attacker never turn a read into plain text. A read sends no password.
    async fn get_from<T: serde::de::DeserializeOwned>(
        &self,
        host: &str,
        path: &str,
    ) -> Result<(T, Scheme), ApiError> {
        self.usable(host)?;
        let mut scheme = self.scheme;
        let mut sent = self.http().get(self.url(scheme, host, path)).send().await;
        if let Err(e) = &sent
            && rest_tls::speaks_other_scheme(e, scheme)
            && self.plain.allows(scheme.other(), host)
        {
            scheme = scheme.other();
            sent = self.http().get(self.url(scheme, host, path)).send().await;
        }
        let r = sent
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| Self::err(host, chain(&e)))?;
        let bytes = capped::body(r, capped::MAX_BODY)
            .await
            .map_err(|e| Self::err(host, e))?;
        let value = serde_json::from_slice(&bytes).map_err(|e| Self::err(host, e))?;
        Ok((value, scheme))
    }

    /// `GET path` from `host`, decoded from JSON.
    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        host: &str,
        path: &str,
    ) -> Result<T, ApiError> {
        self.get_from(host, path).await.map(|(v, _)| v)
    }

    /// Whether the member on `host` serves its REST API in the scheme the spec asks for.
    pub async fn serves_wanted_scheme(&self, host: &str) -> Result<bool, ApiError> {
        let (_, scheme): (Value, Scheme) = self.get_from(host, "/patroni").await?;
        Ok(scheme == self.scheme)
    }

    /// `GET /cluster` from `host`.
    pub async fn cluster(&self, host: &str) -> Result<ClusterView, ApiError> {
        self.get(host, "/cluster").await
    }

    /// `GET /patroni` from `host`: the member's own role and timeline.
    pub async fn node(&self, host: &str) -> Result<NodeStatus, ApiError> {
        self.get(host, "/patroni").await
    }

    /// The cluster view from the first of `hosts` that answers.
    pub async fn cluster_any(&self, hosts: &[String]) -> Result<ClusterView, ApiError> {
        let mut last = Self::err("-", "no PostgreSQL hosts");
        for h in hosts {
            match self.cluster(h).await {
                Ok(v) => return Ok(v),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// `GET /config`: the dynamic configuration in the DCS.
    pub async fn config(&self, host: &str) -> Result<Value, ApiError> {
        self.get(host, "/config").await
    }

    async fn unsafe_call(
        &self,
        method: reqwest::Method,
        host: &str,
        path: &str,
        body: &Value,
    ) -> Result<String, ApiError> {
        if !self.trusted.contains(host) {
            let why = "its SSH host key has not been verified: the REST password is not sent to it";
            return Err(Self::err(host, why));
        }
        self.usable(host)?;
        let r = self
            .http()
            .request(method, self.url(self.scheme, host, path))
            .basic_auth("patroni", Some(&self.password))
            .json(body)
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .map_err(|e| Self::err(host, chain(&e)))?;
        let status = r.status();
        let text = capped::body(r, capped::MAX_BODY).await.unwrap_or_default();
        let text = String::from_utf8_lossy(&text).into_owned();
        if status.is_success() {
            Ok(text)
        } else {
            let mut e = Self::err(host, format!("{status}: {}", text.trim()));
            e.status = Some(status.as_u16());
            Err(e)
        }
    }

    /// `PUT /config`: the whole dynamic configuration, where the DCS has none (a cluster that
    /// adopted its data was never bootstrapped by Patroni, and `PATCH` needs one to merge into).
    pub async fn put_config(&self, host: &str, config: &Value) -> Result<(), ApiError> {
        self.unsafe_call(reqwest::Method::PUT, host, "/config", config)
            .await
            .map(drop)
    }

    /// `PATCH /config` with a JSON merge patch (null removes a key).
    pub async fn patch_config(&self, host: &str, patch: &Value) -> Result<(), ApiError> {
        self.unsafe_call(reqwest::Method::PATCH, host, "/config", patch)
            .await
            .map(drop)
    }

    /// Asks the member on `host` to restart or reinitialize (see [`MemberAction`]).
    pub async fn act(&self, host: &str, action: MemberAction) -> Result<(), ApiError> {
        let (path, body) = action.request();
        self.unsafe_call(reqwest::Method::POST, host, path, &body)
            .await
            .map(drop)
    }

    /// `POST /switchover` from `leader` to `candidate` (member names), sent to `host`.
    pub async fn switchover(
        &self,
        host: &str,
        leader: &str,
        candidate: &str,
    ) -> Result<String, ApiError> {
        let body = serde_json::json!({"leader": leader, "candidate": candidate});
        self.unsafe_call(reqwest::Method::POST, host, "/switchover", &body)
            .await
    }
}

/// What the engine and the switchover need from Patroni's REST API: [`PatroniApi`] for real,
/// `engine::fake::FakePatroni` in tests.
pub trait Patroni: Send + Sync {
    /// `GET /cluster` from `host`.
    fn cluster<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<ClusterView, ApiError>>;
    /// `GET /patroni` from `host`: the member's own role and timeline.
    fn node<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<NodeStatus, ApiError>>;
    /// `GET /config`: the dynamic configuration in the DCS.
    fn config<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Value, ApiError>>;
    /// `PATCH /config` with a JSON merge patch.
    fn patch_config<'a>(
        &'a self,
        host: &'a str,
        patch: &'a Value,
    ) -> BoxFuture<'a, Result<(), ApiError>>;
    /// `PUT /config`: the whole dynamic configuration, where the DCS holds none yet.
    fn put_config<'a>(
        &'a self,
        host: &'a str,
        config: &'a Value,
    ) -> BoxFuture<'a, Result<(), ApiError>>;
    /// Asks the member on `host` to restart or reinitialize.
    fn act<'a>(
        &'a self,
        host: &'a str,
        action: MemberAction,
    ) -> BoxFuture<'a, Result<(), ApiError>>;
    /// `POST /switchover` from `leader` to `candidate` (member names), sent to `host`.
    fn switchover<'a>(
        &'a self,
        host: &'a str,
        leader: &'a str,
        candidate: &'a str,
    ) -> BoxFuture<'a, Result<String, ApiError>>;

    /// Whether the member on `host` serves its REST API in the scheme the spec asks for
    /// (HTTPS with `spec.tls` on); false while it still serves the other one.
    fn serves_wanted_scheme<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<bool, ApiError>>;

    /// Also trusts the CA certificates `roots` the hosts still serve from (see
    /// [`PatroniApi::trust_also`]); fakes have nothing to verify.
    fn trust_also(&self, _roots: &[String]) {}

    /// Allows reads from `host` in plain text (see [`PatroniApi::allow_plain`]).
    fn allow_plain(&self, _host: &str) {}

    /// The cluster view from the first of `hosts` that answers.
    fn cluster_any<'a>(
        &'a self,
        hosts: &'a [String],
    ) -> BoxFuture<'a, Result<ClusterView, ApiError>> {
        Box::pin(async move {
            let mut last = PatroniApi::err("-", "no PostgreSQL hosts");
            for h in hosts {
                match self.cluster(h).await {
                    Ok(v) => return Ok(v),
                    Err(e) => last = e,
                }
            }
            Err(last)
        })
    }
}

/// Waits (up to `limit`, every `every`) until a switchover to member `candidate` is done, as the
/// cluster view read through the first of `ask` that answers shows it (see
/// [`ClusterView::after_switchover`]); otherwise how far it came. Every switchover waits here.
pub async fn settled(
    api: &dyn Patroni,
    ask: &[String],
    (candidate, followers): (&str, &[String]),
    (limit, every): (Duration, Duration),
) -> Result<(), super::patroni_view::Handover> {
    use super::patroni_view::Handover;
    super::poll(limit, every, || async move {
        let view = api.cluster_any(ask).await;
        let view = view.map_err(|_| Handover::NotLeading)?;
        match view.after_switchover(candidate, followers) {
            Handover::Settled => Ok(()),
            other => Err(other),
        }
    })
    .await
}

impl Patroni for PatroniApi {
    fn trust_also(&self, roots: &[String]) {
        PatroniApi::trust_also(self, roots)
    }
    fn allow_plain(&self, host: &str) {
        PatroniApi::allow_plain(self, host)
    }
    fn serves_wanted_scheme<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<bool, ApiError>> {
        Box::pin(PatroniApi::serves_wanted_scheme(self, host))
    }
    fn cluster<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<ClusterView, ApiError>> {
        Box::pin(PatroniApi::cluster(self, host))
    }
    fn node<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<NodeStatus, ApiError>> {
        Box::pin(PatroniApi::node(self, host))
    }
    fn config<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(PatroniApi::config(self, host))
    }
    fn patch_config<'a>(
        &'a self,
        host: &'a str,
        patch: &'a Value,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(PatroniApi::patch_config(self, host, patch))
    }
    fn put_config<'a>(
        &'a self,
        host: &'a str,
        config: &'a Value,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(PatroniApi::put_config(self, host, config))
    }
    fn act<'a>(
        &'a self,
        host: &'a str,
        action: MemberAction,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(PatroniApi::act(self, host, action))
    }
    fn switchover<'a>(
        &'a self,
        host: &'a str,
        leader: &'a str,
        candidate: &'a str,
    ) -> BoxFuture<'a, Result<String, ApiError>> {
        Box::pin(PatroniApi::switchover(self, host, leader, candidate))
    }
    fn cluster_any<'a>(
        &'a self,
        hosts: &'a [String],
    ) -> BoxFuture<'a, Result<ClusterView, ApiError>> {
        Box::pin(PatroniApi::cluster_any(self, hosts))
    }
}

/// The merge patch that turns `current` into `desired` for the keys pgmetal owns: top-level
/// settings in `desired` and every `postgresql.parameters` key (unknown parameters are removed).
pub fn config_patch(current: &Value, desired: &Value) -> Option<Value> {
    let mut patch = serde_json::Map::new();
    let (Some(cur), Some(want)) = (current.as_object(), desired.as_object()) else {
        return None;
    };
    for (k, v) in want {
        if k == "postgresql" {
            continue;
        }
        if cur.get(k) != Some(v) {
            patch.insert(k.clone(), v.clone());
        }
    }
    let params = |o: &Value| {
        o.pointer("/postgresql/parameters")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let (cur_p, want_p) = (params(current), params(desired));
    let mut pp = serde_json::Map::new();
    for (k, v) in &want_p {
        if !cur_p.get(k).is_some_and(|c| same_setting(c, v)) {
            pp.insert(k.clone(), v.clone());
        }
    }
    for k in cur_p.keys().filter(|k| !want_p.contains_key(*k)) {
        pp.insert(k.clone(), Value::Null);
    }
    let other = |o: &Value| {
        o.get("postgresql").and_then(Value::as_object).map(|m| {
            m.iter()
                .filter(|(k, _)| *k != "parameters")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<serde_json::Map<_, _>>()
        })
    };
    let mut pg = serde_json::Map::new();
    let cur_o = other(current).unwrap_or_default();
    for (k, v) in other(desired).unwrap_or_default() {
        if cur_o.get(&k) != Some(&v) {
            pg.insert(k, v);
        }
    }
    if !pp.is_empty() {
        pg.insert("parameters".into(), Value::Object(pp));
    }
    if !pg.is_empty() {
        patch.insert("postgresql".into(), Value::Object(pg));
    }
    (!patch.is_empty()).then_some(Value::Object(patch))
}

/// Patroni echoes numbers as numbers even when they were set as strings: compare as text.
fn same_setting(a: &Value, b: &Value) -> bool {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    text(a) == text(b)
}

#[cfg(test)]
#[path = "patroni_api_tests.rs"]
mod tests;
