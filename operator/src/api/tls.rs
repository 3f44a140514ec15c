//! `spec.tls`: encryption of the cluster's channels with certificates from a CA pgmetal keeps
//! (or one someone else keeps, `Provided`).

use std::time::Duration;

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// How the cluster's channels are encrypted: PostgreSQL (the server presents a certificate
/// signed by the cluster's CA and every TCP `pg_hba` line is `hostssl`), Patroni's REST API
/// (HTTPS, a client certificate for unsafe methods) and etcd (TLS to clients and peers, each
/// with a certificate of the cluster's CA).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!self.renewBefore.matches('^([0-9]+(h|m|s))+$') || !self.certificateLifetime.matches('^([0-9]+(h|m|s))+$') || duration(self.renewBefore) < duration(self.certificateLifetime)").message("tls.renewBefore must be shorter than tls.certificateLifetime"))]
#[x_kube(validation = Rule::new("(has(self.mode) && self.mode == 'Provided') == has(self.caSecret)").message("tls.caSecret names the CA's Secret when, and only when, tls.mode is Provided"))]
pub struct TlsSpec {
    /// `Managed` (default): pgmetal creates a CA for the cluster (the operator keeps it in the
    /// Secret `<cluster>-ca`, the CLI beside its secrets file) and issues every certificate
    /// from it. `Provided`: the same, from a CA someone else keeps (`caSecret`, e.g. one
    /// cert-manager writes and rotates). `Disabled`: plain text, for a cluster whose clients
    /// cannot do TLS yet.
    #[serde(default)]
    pub mode: TlsMode,
    /// With `mode: Provided`: the Secret, in the cluster's namespace, holding the CA pgmetal
    /// issues the cluster's certificates from, in the layout cert-manager writes for a CA
    /// certificate: `tls.crt` (a self-signed CA certificate) and `tls.key`. When it changes,
    /// the next converge reissues every certificate and reloads the services. The CLI reads
    /// the CA from the files beside its secrets file instead, and never creates them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub ca_secret: Option<String>,
    /// How long an issued server certificate is valid, as a duration such as `2160h` (90
    /// days, the default) or `90m`.
    #[serde(default = "default_lifetime")]
    #[schemars(regex(pattern = r"^([0-9]+(h|m|s))+$"))]
    pub certificate_lifetime: String,
    /// How long before its expiry a certificate is issued again, such as `168h` (7 days, the
    /// default). Must be shorter than `certificateLifetime`.
    #[serde(default = "default_renew_before")]
    #[schemars(regex(pattern = r"^([0-9]+(h|m|s))+$"))]
    pub renew_before: String,
    /// More DNS names or addresses every PostgreSQL server certificate carries, beside the
    /// host's own and the HAProxy hosts': the names clients use to reach the cluster (a DNS
    /// name in front of HAProxy), so that `sslmode=verify-full` works through them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 32),
        inner(regex(pattern = r"^[A-Za-z0-9]([A-Za-z0-9.:-]{0,251}[A-Za-z0-9])?$"))
    )]
    pub service_names: Vec<String>,
}

/// Where the cluster's certificates come from.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum TlsMode {
    /// pgmetal's own CA for the cluster signs every certificate.
    #[default]
    Managed,
    /// A CA from the Secret `caSecret` signs every certificate.
    Provided,
    /// No encryption: every channel stays plain text.
    Disabled,
}

impl Default for TlsSpec {
    fn default() -> Self {
        Self {
            mode: TlsMode::default(),
            certificate_lifetime: default_lifetime(),
            renew_before: default_renew_before(),
            service_names: Vec::new(),
            ca_secret: None,
        }
    }
}

impl TlsSpec {
    /// Whether pgmetal encrypts the channels.
    pub fn enabled(&self) -> bool {
        self.mode != TlsMode::Disabled
    }

    /// The Secret of a `Provided` CA, or which field is wrong and why.
    pub fn provided_ca(&self) -> Result<Option<&str>, (&'static str, String)> {
        match (self.mode, self.ca_secret.as_deref()) {
            (TlsMode::Provided, Some(name)) => Ok(Some(name)),
            (TlsMode::Provided, None) => Err((
                "spec.tls.caSecret",
                "is required with mode Provided: name the Secret holding the CA (tls.crt, tls.key)"
                    .into(),
            )),
            (_, Some(_)) => Err((
                "spec.tls.caSecret",
                "is only read with mode Provided: remove it, or set mode: Provided".into(),
            )),
            (_, None) => Ok(None),
        }
    }

    /// `certificateLifetime` and `renewBefore` as durations, or which field is wrong and why.
    pub fn durations(&self) -> Result<(Duration, Duration), (&'static str, String)> {
        let lifetime = parse_duration(&self.certificate_lifetime)
            .map_err(|e| ("spec.tls.certificateLifetime", e))?;
        let renew = parse_duration(&self.renew_before).map_err(|e| ("spec.tls.renewBefore", e))?;
        if renew >= lifetime {
            return Err((
                "spec.tls.renewBefore",
                format!(
                    "{} is not shorter than certificateLifetime {}",
                    self.renew_before, self.certificate_lifetime
                ),
            ));
        }
        Ok((lifetime, renew))
    }
}

/// A duration in hours, minutes and seconds, such as `2160h`, `1h30m` or `90s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration such as 2160h, 1h30m or 90s");
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

fn default_lifetime() -> String {
    "2160h".into()
}
fn default_renew_before() -> String {
    "168h".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_name_the_field() {
        assert_eq!(
            parse_duration("2160h"),
            Ok(Duration::from_secs(2160 * 3600))
        );
        assert_eq!(parse_duration("1h30m5s"), Ok(Duration::from_secs(5405)));
        for bad in ["", "10", "h", "1d", "1.5h", "0s", "-1h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        let t = TlsSpec::default();
        assert_eq!(
            t.durations().unwrap(),
            (
                Duration::from_secs(2160 * 3600),
                Duration::from_secs(168 * 3600)
            )
        );
        let t = TlsSpec {
            renew_before: "3000h".into(),
            ..TlsSpec::default()
        };
        assert_eq!(t.durations().unwrap_err().0, "spec.tls.renewBefore");
    }
}
