//! Fleet mode: three real `lenscap serve` instances on one real `redis-server`, requests
//! spread round-robin as a load balancer would, behave as one site.
//!
//! Needs `redis-server` (Debian package `redis-server`; `scripts/test.sh` installs it): a
//! missing one fails the tests, naming it.

mod fleet_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fleet_support::*;

#[test]
fn a_person_spread_over_three_instances_is_never_refused() {
    let (_redis, shared) = on_one_redis("person");
    let statuses = person(&ports(&shared), "198.51.100.20");
    assert_eq!(statuses.len(), PAGES * (PER_PAGE + 1));
    assert!(refused(&statuses).is_empty(), "{:?}", refused(&statuses));

    // The same person over three instances that share nothing is refused: what Redis fixes.
    let alone = fleet("person-alone", &Store::Alone, "50ms");
    let statuses = person(&ports(&alone), "198.51.100.20");
    assert!(
        !refused(&statuses).is_empty(),
        "three lone instances refused nothing"
    );
}

#[test]
fn a_scraper_spread_over_three_gets_no_more_than_from_one() {
    let (_redis, shared) = on_one_redis("scraper");
    let ports = ports(&shared);
    // Two addresses in different subnets: one on one instance, one spread over three.
    let from_one = scraper(&ports[..1], "203.0.113.7", 40);
    let spread = scraper(&ports, "192.0.2.7", 40);
    eprintln!("scraper: {from_one} from one instance, {spread} spread over three");
    assert!(
        from_one <= 10,
        "one instance let the script past its image burst: {from_one}"
    );
    // One instance's image burst is 10; what either run gets beyond its burst is the
    // quota's refill over the run, and the spread run takes a few round trips longer. Three
    // instances sharing nothing would give it three bursts (30).
    assert!(
        spread <= 10,
        "spread over three instances the scraper got {spread} (one instance's burst is 10; from one {from_one})"
    );
}

#[test]
fn a_scraper_s_requests_at_once_over_three_instances_get_one_budget() {
    let redis_port = free_port();
    let _redis = redis_server(redis_port);
    // A timeout no loaded test machine reaches: what is measured is the merge's atomicity.
    let shared = fleet("at-once", &Store::Redis(redis_port), "2s");
    wait_for_store(&admins(&shared), "ok");
    one_budget_at_once(&shared, "192.0.2.9", 10);
}

#[test]
fn the_passes_an_address_is_given_are_counted_once_for_the_fleet() {
    let redis_port = free_port();
    let _redis = redis_server(redis_port);
    // A timeout no loaded test machine reaches: a decision on a local copy would be refused
    // late too, and what is measured is that none is needed.
    let shared = fleet("passes", &Store::Redis(redis_port), "2s");
    wait_for_store(&admins(&shared), "ok");
    // The default policy gives an address 8 passes at once (`passes`, burst 8).
    let spread = passes_minted(&ports(&shared), "198.51.100.60", 40);
    // Each instance read the address's pass count before deciding: no pass was granted on a
    // stale copy and taken back when its charge reached Redis.
    let late = counter(&admins(&shared), "lenscap_store_late_refusals_total");
    let alone = fleet("passes-alone", &Store::Alone, "50ms");
    let apart = passes_minted(&ports(&alone), "198.51.100.60", 40);
    eprintln!(
        "passes: {spread} over three instances on Redis ({late} refused late), {apart} over three alone"
    );
    assert_eq!(late, 0, "passes granted on a stale count were refused late");
    assert!(
        (1..=8).contains(&spread),
        "three instances on one Redis gave one address {spread} passes (burst 8)"
    );
    // Three instances that share nothing give it a burst each: what sharing the count fixes.
    assert!(apart > 8, "three lone instances gave only {apart} passes");
}

#[test]
fn a_cookie_issued_by_one_instance_is_valid_on_the_others() {
    let (_redis, shared) = on_one_redis("cookie");
    cookie_is_valid_everywhere(&ports(&shared));
}

#[test]
fn people_are_served_while_redis_is_gone_and_sharing_resumes_when_it_returns() {
    let redis_port = free_port();
    let redis = redis_server(redis_port);
    let shared = fleet("outage", &Store::Redis(redis_port), "50ms");
    let ports = ports(&shared);
    let admins = admins(&shared);
    wait_for_store(&admins, "ok");

    drop(redis);
    let statuses = person(&ports, "198.51.100.40");
    assert!(refused(&statuses).is_empty(), "{:?}", refused(&statuses));
    wait_for_store(&admins, "degraded");
    let metrics = get(admins[0], "/metrics", &[]).body;
    assert!(
        metrics.contains("lenscap_store_state{backend=\"redis\",store=\"degraded\"} 1"),
        "{metrics}"
    );

    let _redis = redis_server(redis_port);
    wait_for_store(&admins, "ok");
    let statuses = person(&ports, "198.51.100.41");
    assert!(refused(&statuses).is_empty(), "{:?}", refused(&statuses));
}

#[test]
fn simulate_spreads_one_run_over_every_target() {
    let (_redis, shared) = on_one_redis("simulate");
    let targets: Vec<String> = ports(&shared)
        .iter()
        .map(|port| format!("http://127.0.0.1:{port}/"))
        .collect();
    let output = Command::new(env!("CARGO_BIN_EXE_lenscap"))
        .arg("simulate")
        .args(targets.iter().flat_map(|t| ["--target", t.as_str()]))
        .args(["--max-requests", "150", "--duration", "20s", "--json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "simulate printed no report ({e}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(report.is_object(), "{report}");
    let answered: Vec<u64> = shared
        .instances
        .iter()
        .map(|(_, _, admin)| counter(&[*admin], "lenscap_requests_total"))
        .collect();
    let total: u64 = answered.iter().sum();
    assert!(
        total >= 100,
        "the run reached the fleet {total} times: {answered:?}"
    );
    for n in &answered {
        // Round-robin: each instance gets about a third.
        assert!(*n * 5 >= total, "one instance was left out: {answered:?}");
    }
}

/// Clients connected to the Redis at `port`, by its own count.
fn redis_clients(port: u16) -> u64 {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let mut connection = client.get_connection().unwrap();
    let info: String = redis::cmd("INFO")
        .arg("clients")
        .query(&mut connection)
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .expect("INFO clients has connected_clients")
        - 1 // this one
}

#[test]
fn a_policy_reload_keeps_the_connection() {
    let redis_port = free_port();
    let _redis = redis_server(redis_port);
    // A round trip past a short timeout would drop and remake a connection (see on_one_redis).
    let shared = fleet("reload", &Store::Redis(redis_port), "2s");
    let admins = admins(&shared);
    wait_for_store(&admins, "ok");
    let before = redis_clients(redis_port);
    assert!(before >= 3, "three instances, {before} connections");

    let (child, _, _) = &shared.instances[0];
    let log = shared.dir.join("lenscap-0.log");
    let status = Command::new("kill")
        .args(["-HUP", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("policy reloaded")
    {
        assert!(started.elapsed() < DEADLINE, "the reload never finished");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(redis_clients(redis_port), before);
    wait_for_store(&admins, "ok");
}
