//! Cluster membership end to end: three real proxies on one throwaway
//! PostgreSQL, each advertising its own loopback address (127.0.0.2-4, no
//! setup needed on Linux) and seeded with the first; their views through
//! the admin port's `/cluster`.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{postgres::Postgres, *};

/// A proxy of the cluster and the function behind it.
struct Node {
    massa: Proc,
    admin: u16,
    /// Its member id.
    id: String,
    _function: Proc,
}

/// Starts a proxy advertising `host` (a bare host: the public port is
/// appended) with gossip on `gossip` and `seed` as its one seed.
fn start_node(pg: &Postgres, host: &str, gossip: u16, seed: &str) -> Node {
    let (fn_port, port, admin) = (free_port(), free_port(), free_port());
    let function = start_example_fn(fn_port, &[]);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_massa"));
    cmd.args(["--http-interface", host, "--http-port", &port.to_string()])
        .args(["--admin-interface", "127.0.0.1", "--admin-port", &admin.to_string()])
        .args(["--user-function-port", &fn_port.to_string()])
        .args(["--store", "postgres", "--postgres-url", &pg.url()])
        .args(["--advertise-address", host, "--cluster-port", &gossip.to_string(), "--cluster-seeds", seed]);
    let node = Node { massa: Proc::spawn_command(cmd), admin, id: format!("{host}:{port}"), _function: function };
    let start = Instant::now();
    while http_get(admin, "/health/ready").map(|(s, _)| s) != Some(200) {
        assert!(start.elapsed() < PATIENCE, "{host} never became ready; log:\n{}", node.massa.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    node
}

/// A node's view: `(member id, state, shards)` sorted by id.
fn view(node: &Node) -> Vec<(String, String, u64)> {
    let (status, body) = http_get(node.admin, "/cluster").expect("/cluster answers");
    assert_eq!(status, 200, "{body}");
    let json: Value = serde_json::from_str(&body).expect("/cluster is JSON");
    assert_eq!(json["self"], node.id.as_str(), "{body}");
    assert_eq!(json["shards"], 1024, "{body}");
    let members = json["members"].as_array().expect("members").iter();
    members.map(|m| (m["id"].as_str().unwrap().to_owned(), m["state"].as_str().unwrap().to_owned(), m["shards"].as_u64().unwrap())).collect()
}

/// Waits (bounded) until every node in `nodes` sees exactly `ids`, all
/// serving, and they agree on the shard counts; returns the agreed view.
fn wait_for_agreement(nodes: &[&Node], ids: &[&str]) -> Vec<(String, String, u64)> {
    let start = Instant::now();
    loop {
        let views: Vec<_> = nodes.iter().map(|n| view(n)).collect();
        let agreed = views.iter().all(|v| {
            v == &views[0] && v.iter().map(|(id, _, _)| id.as_str()).eq(ids.iter().copied()) && v.iter().all(|(_, s, _)| s == "serving")
        });
        if agreed {
            return views.into_iter().next().unwrap();
        }
        assert!(start.elapsed() < PATIENCE, "no agreement on {ids:?}: {views:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn three_proxies_agree_on_members_and_drop_a_killed_and_a_stopped_one() {
    let pg = Postgres::start();
    let gossip = [free_port(), free_port(), free_port()];
    let seed = format!("127.0.0.2:{}", gossip[0]);
    let a = start_node(&pg, "127.0.0.2", gossip[0], &seed);
    let b = start_node(&pg, "127.0.0.3", gossip[1], &seed);
    let c = start_node(&pg, "127.0.0.4", gossip[2], &seed);
    // Ready only once gossip settled: a proxy that says ready already sees
    // the members that were up before it (and would not take their shards).
    let knows = |node: &Node, other: &Node| view(node).iter().any(|(id, state, _)| *id == other.id && state == "serving");
    assert!(knows(&b, &a), "b ready without knowing a: {:?}", view(&b));
    assert!(knows(&c, &a) && knows(&c, &b), "c ready without knowing a and b: {:?}", view(&c));
    let mut ids = [a.id.as_str(), b.id.as_str(), c.id.as_str()];
    ids.sort();

    let agreed = wait_for_agreement(&[&a, &b, &c], &ids);
    assert_eq!(agreed.iter().map(|(_, _, n)| n).sum::<u64>(), 1024, "{agreed:?}");
    assert!(agreed.iter().all(|(_, _, n)| *n > 0), "{agreed:?}");
    assert_eq!(metric(a.admin, "massa_cluster_members{state=\"serving\"}"), 3);

    // Killed: no goodbye, the failure detector drops it.
    c.massa.signal(libc::SIGKILL);
    let two: Vec<&str> = ids.iter().copied().filter(|id| *id != c.id).collect();
    let agreed = wait_for_agreement(&[&a, &b], &two);
    assert_eq!(agreed.iter().map(|(_, _, n)| n).sum::<u64>(), 1024, "{agreed:?}");
    assert!(a.massa.log().contains("cluster member left"), "{}", a.massa.log());

    // Stopped: it says it is leaving (placing its shards on `a` at once),
    // then drains, exits and is dropped.
    let mut b = b;
    b.massa.signal(libc::SIGTERM);
    let mut seen = Vec::new();
    let start = Instant::now();
    loop {
        let state = view(&a).into_iter().find(|(id, _, _)| *id == b.id).map(|(_, s, _)| s);
        if seen.last() != Some(&state) {
            seen.push(state.clone());
        }
        if state.is_none() {
            break;
        }
        assert!(start.elapsed() < PATIENCE, "{} never dropped; seen {seen:?}", b.id);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(seen.contains(&Some("leaving".to_owned())), "seen {seen:?}; log of the stopped one:\n{}", b.massa.log());
    assert_eq!(b.massa.must_exit(), 0, "{}", b.massa.log());
    let alone = view(&a);
    assert_eq!(alone, [(a.id.clone(), "serving".to_owned(), 1024)]);
    assert!(metric(a.admin, "massa_cluster_membership_changes_total") >= 4);
}

#[test]
fn cluster_seeds_need_the_shared_store() {
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &[]);
    let mut m = spawn_massa(fn_port, &["--cluster-seeds", "127.0.0.1:1"]);
    assert_ne!(m.proc.must_exit(), 0);
    assert!(m.proc.log().contains("--cluster-seeds needs --store postgres"), "{}", m.proc.log());
}
