//! The running etcd cluster's members against the spec's. pgmetal does not change etcd
//! membership yet: a converge whose spec names other etcd hosts than the running cluster has is
//! refused before anything runs. Converging it would start a second etcd cluster on the new
//! host, point Patroni at both, and split its DCS.

use std::collections::BTreeSet;

use super::error::{Failure, HostErrorKind};
use super::observe::LiveMember;
use crate::api::PostgresClusterSpec;
use crate::render::etcd_url;

/// The host of a peer URL (`http://10.0.0.1:2380` → `10.0.0.1`, `http://[fd00::1]:2380` →
/// `fd00::1`).
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Ok when the running members are exactly the spec's etcd hosts (by peer URL); otherwise the
/// failure that says what differs and what to do.
pub fn unchanged(spec: &PostgresClusterSpec, live: &[LiveMember]) -> Result<(), Failure> {
    let port = spec.etcd.peer_port;
    let want: BTreeSet<String> = spec.etcd.hosts.iter().map(|h| etcd_url(h, port)).collect();
    let have: BTreeSet<String> = live.iter().flat_map(|m| m.peer_urls.clone()).collect();
    if want == have {
        return Ok(());
    }
    let hosts = |urls: &BTreeSet<String>| {
        let v: Vec<&str> = urls.iter().map(|u| url_host(u)).collect();
        v.join(", ")
    };
    let why = format!(
        "spec.etcd.hosts [{}] differs from the members of the running etcd cluster [{}]: \
         pgmetal does not change etcd membership yet, and converging would start a second etcd \
         cluster and split Patroni's DCS. Nothing was changed. Set spec.etcd.hosts back to \
         [{}]; to move a member, change the membership with etcdctl (member add, then member \
         remove) and then the spec",
        spec.etcd.hosts.join(", "),
        hosts(&have),
        hosts(&have),
    );
    Err(Failure::new(HostErrorKind::Etcd, why))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(hosts: &str) -> PostgresClusterSpec {
        let yaml = format!("ssh: {{}}\npostgres: {{primary: a}}\netcd: {{hosts: [{hosts}]}}\n");
        serde_saphyr::from_str(&yaml).unwrap()
    }

    fn live(hosts: &[&str]) -> Vec<LiveMember> {
        hosts
            .iter()
            .map(|h| LiveMember {
                // Members listed at bootstrap but not started yet have no name.
                name: String::new(),
                peer_urls: vec![etcd_url(h, 2380)],
            })
            .collect()
    }

    #[test]
    fn the_same_members_in_any_order_pass() {
        let s = spec("10.0.0.1, 10.0.0.2, fd00::3");
        assert!(unchanged(&s, &live(&["fd00::3", "10.0.0.1", "10.0.0.2"])).is_ok());
    }

    #[test]
    fn a_replaced_added_or_removed_member_is_refused_naming_both_lists() {
        let s = spec("10.0.0.1, 10.0.0.2, 10.0.0.4");
        let e = unchanged(&s, &live(&["10.0.0.1", "10.0.0.2", "10.0.0.3"])).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("[10.0.0.1, 10.0.0.2, 10.0.0.4] differs")
                && msg.contains("back to [10.0.0.1, 10.0.0.2, 10.0.0.3]"),
            "{msg}"
        );
        assert!(unchanged(&s, &live(&["10.0.0.1", "10.0.0.2"])).is_err());
        let more = live(&["10.0.0.1", "10.0.0.2", "10.0.0.4", "10.0.0.5"]);
        assert!(unchanged(&s, &more).is_err());
    }

    #[test]
    fn url_hosts() {
        assert_eq!(url_host("http://10.0.0.1:2380"), "10.0.0.1");
        assert_eq!(url_host("http://[fd00::1]:2380"), "fd00::1");
        assert_eq!(url_host("https://db1.example.com:2380"), "db1.example.com");
    }
}
