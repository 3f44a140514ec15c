//! What one observation round costs on the wire: `pgmetal status` (etcd, Patroni's REST API,
//! HAProxy's stats, no SSH) run a few times while nftables counters on this machine count the
//! connections opened and the bytes both ways on each service's port.

use std::process::Command;

use crate::common::Lab;

/// The services an observation asks, with their lab ports.
const SERVICES: [(&str, u16); 3] = [
    ("etcd", 2379),
    ("Patroni REST", 8008),
    ("HAProxy stats", 7000),
];
const TABLE: &str = "pgmetal_bench";

fn nft(args: &str) -> String {
    let o = Command::new("sh")
        .args(["-c", &format!("nft {args}")])
        .output()
        .expect("nft");
    assert!(
        o.status.success(),
        "nft {args}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Counters for traffic between this machine and the lab's `/24`, per service port.
fn install(net: &str) {
    let _ = Command::new("nft")
        .args(["delete", "table", "inet", TABLE])
        .output();
    nft(&format!("add table inet {TABLE}"));
    nft(&format!(
        "'add chain inet {TABLE} out {{ type filter hook output priority 0; }}'"
    ));
    nft(&format!(
        "'add chain inet {TABLE} in {{ type filter hook input priority 0; }}'"
    ));
    for (_, port) in SERVICES {
        let to = format!("ip daddr {net} tcp dport {port}");
        nft(&format!(
            "'add rule inet {TABLE} out {to} counter comment \"out-{port}\"'"
        ));
        nft(&format!(
            "'add rule inet {TABLE} out {to} tcp flags & (syn|ack) == syn counter comment \"syn-{port}\"'"
        ));
        nft(&format!(
            "'add rule inet {TABLE} in ip saddr {net} tcp sport {port} counter comment \"in-{port}\"'"
        ));
    }
}

/// `(packets, bytes)` of the rule commented `name`.
fn counter(listing: &str, name: &str) -> (u64, u64) {
    let line = listing
        .lines()
        .find(|l| l.contains(&format!("comment \"{name}\"")))
        .unwrap_or_else(|| panic!("no counter {name} in {listing}"));
    let after = |word: &str| -> u64 {
        line.split_whitespace()
            .skip_while(|w| *w != word)
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (after("packets"), after("bytes"))
}

/// Markdown rows: per observation round and service, connections opened and bytes both ways.
pub fn cost(lab: &Lab, dir: &std::path::Path, rounds: u32) -> String {
    let prefix = lab.hosts[0].rsplit_once('.').map(|(a, _)| a).unwrap();
    let net = format!("{prefix}.0/24");
    install(&net);
    for _ in 0..rounds {
        let (code, doc, stderr) = lab.pgmetal("status", dir, &lab.var("LAB_KNOWN_HOSTS"));
        assert_eq!(code, 0, "status: {doc} {stderr}");
    }
    let listing = nft(&format!("list table inet {TABLE}"));
    nft(&format!("delete table inet {TABLE}"));
    let mut rows = String::new();
    let (mut conns, mut bytes) = (0, 0);
    for (name, port) in SERVICES {
        let (syn, _) = counter(&listing, &format!("syn-{port}"));
        let (_, out) = counter(&listing, &format!("out-{port}"));
        let (_, back) = counter(&listing, &format!("in-{port}"));
        let per = |v: u64| v as f64 / f64::from(rounds);
        rows.push_str(&format!(
            "| observation round: {name} (port {port}): connections, bytes sent / received | {:.0}, {:.0} / {:.0} |\n",
            per(syn),
            per(out),
            per(back)
        ));
        conns += syn;
        bytes += out + back;
    }
    rows.push_str(&format!(
        "| observation round, total (a fresh `pgmetal status` process: no connection reused) | {:.0} connections, {:.1} KiB |\n",
        conns as f64 / f64::from(rounds),
        bytes as f64 / f64::from(rounds) / 1024.0
    ));
    rows
}
