//! Fleet mode on a Redis Cluster: three real `lenscap serve` instances on a real three-node
//! cluster (each record's key in its own slot, so one request's records lie on several
//! nodes), requests spread round-robin, behave as one site.
//!
//! Needs `redis-server` and `redis-cli` (Debian packages `redis-server` and `redis-tools`;
//! `scripts/test.sh` installs them): a missing one fails the test, naming it.

mod fleet_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fleet_support::*;

/// Three primaries (no replicas) on loopback ports, each killed by PID when dropped.
struct Cluster {
    nodes: Vec<Running>,
    ports: Vec<u16>,
    dir: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One cluster node: its port, its cluster-bus port, its config file in `dir`.
fn cluster_node(dir: &Path, port: u16, bus: u16) -> Running {
    let extra: Vec<std::ffi::OsString> = vec![
        "--cluster-enabled".into(),
        "yes".into(),
        "--cluster-port".into(),
        bus.to_string().into(),
        "--cluster-config-file".into(),
        dir.join(format!("nodes-{port}.conf")).into(),
        "--dir".into(),
        dir.into(),
    ];
    redis_server_with(port, &extra)
}

/// What `CLUSTER INFO` says on the node at `port`.
fn cluster_info(port: u16) -> String {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let Ok(mut connection) = client.get_connection() else {
        return String::new();
    };
    redis::cmd("CLUSTER")
        .arg("INFO")
        .query(&mut connection)
        .unwrap_or_default()
}

/// A three-node cluster, its 16384 slots shared out by `redis-cli --cluster create`.
fn redis_cluster(name: &str) -> Cluster {
    let dir = std::env::temp_dir().join(format!("lenscap-cluster-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ports = free_ports::<6>();
    let (ports, buses) = ports.split_at(3);
    let nodes = ports
        .iter()
        .zip(buses)
        .map(|(&port, &bus)| cluster_node(&dir, port, bus))
        .collect();
    let cluster = Cluster {
        nodes,
        ports: ports.to_vec(),
        dir,
    };
    let created = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(ports.iter().map(|p| format!("127.0.0.1:{p}")))
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run redis-cli ({e}): install the Debian package redis-tools (scripts/test.sh does)")
        });
    assert!(
        created.status.success(),
        "redis-cli --cluster create failed: {}{}",
        String::from_utf8_lossy(&created.stdout),
        String::from_utf8_lossy(&created.stderr)
    );
    let started = Instant::now();
    while !ports
        .iter()
        .all(|&p| cluster_info(p).contains("cluster_state:ok"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the cluster never reached cluster_state:ok: {}",
            cluster_info(ports[0])
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster
}

/// Keys the node at `port` holds.
fn keys_on(port: u16) -> u64 {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let mut connection = client.get_connection().unwrap();
    redis::cmd("DBSIZE").query(&mut connection).unwrap()
}

#[test]
fn three_instances_on_a_three_node_cluster_behave_as_one_site() {
    let started = Instant::now();
    let cluster = redis_cluster("site");
    // Generous: a loaded test machine must not make an instance decide locally mid-test.
    let shared = fleet("cluster", &Store::Cluster(cluster.ports.clone()), "1s");
    let ports = ports(&shared);
    wait_for_store(&admins(&shared), "ok");

    let statuses = person(&ports, "198.51.100.20");
    assert_eq!(statuses.len(), PAGES * (PER_PAGE + 1));
    assert!(refused(&statuses).is_empty(), "{:?}", refused(&statuses));

    // One instance's image burst is 10 (see `config`).
    let spread = scraper(&ports, "192.0.2.7", 40);
    assert!(
        spread <= 10,
        "spread over three instances the scraper got {spread} (one instance's burst is 10)"
    );
    one_budget_at_once(&shared, "203.0.113.9", 10);

    cookie_is_valid_everywhere(&ports);

    // The records are spread over the nodes: one request's reads and merges touched several.
    let held: Vec<u64> = cluster.ports.iter().map(|&p| keys_on(p)).collect();
    assert!(
        held.iter().filter(|&&n| n > 0).count() >= 2,
        "every key on one node: {held:?}"
    );
    eprintln!(
        "cluster test: keys per node {held:?}, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
