//! A cluster on one machine: real `massa` binaries, each in a network
//! namespace of its own (tests/support/netns.rs) in front of its own example
//! function, all on one PostgreSQL on the bridge. A bounded load sends the
//! same carts to every proxy while a test kills, partitions, adds or stops
//! proxies; afterwards every journal and value in PostgreSQL is checked
//! against every acknowledged command, and the replies against the moments
//! ownership was moving.
//!
//! Leases are [`LEASE`] (`--lease-duration 2s`) to keep the file fast. Needs
//! root (namespaces), `ip` (iproute2) and `iptables`.

mod support;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use massa::grpc::Code;
use massa::proto::com::example::shoppingcart::persistence::ItemAdded;
use massa::proto::com::example::valueentity::shoppingcart::persistence::Cart as ValueCart;
use massa::proto::google::protobuf::Any;
use massa::store::keys::{self, entity_hash};
use prost::Message;
use support::{
    cart::{add, cart, CART, VALUE_CART},
    netns::{Cut, Net},
    postgres::Postgres,
    *,
};

/// `--lease-duration` of every proxy.
const LEASE: Duration = Duration::from_secs(2);
/// Stated bound on ownership moving, past one lease: a crashed owner's
/// lease runs out at most one lease after its last renewal, a refused proxy
/// asks again within an eighth of one, and the next command must arrive
/// and activate; two more leases cover that on a loaded 2-core machine.
const MOVE_MARGIN: Duration = Duration::from_secs(4);
/// How long after a change replies may still be refused while every
/// proxy's view settles (a stated margin, not a measurement).
const SETTLE: Duration = Duration::from_secs(6);

const HTTP_PORT: u16 = 9000;
const ADMIN_PORT: u16 = 9001;
const FN_PORT: u16 = 8080;
const GOSSIP_PORT: u16 = 9100;
/// The lease shards (massa's default `--shards`).
const SHARDS: u64 = 1024;

/// Carts under load: `0..EVENT_SOURCED` event-sourced, the rest value
/// entities.
const KEYS: usize = 20;
const EVENT_SOURCED: usize = 12;
const WORKERS: usize = 4;
/// Each worker's pause between commands (bounds the load's rate).
const PACE: Duration = Duration::from_millis(50);
/// Upper bound on the rounds of one worker's task (the load stops sooner).
const MAX_PER_WORKER: usize = 2000;
/// A call with no reply by then counts as [`Outcome::NoReply`].
const CALL_BOUND: Duration = Duration::from_secs(5);

// === The cluster ===

/// Replicas drop first (fields drop in order), the namespaces last.
struct Cluster {
    replicas: Vec<Option<Replica>>,
    pg: Postgres,
    net: Net,
    /// Whether this build has gossip membership (`--cluster-seeds`).
    membership: bool,
}

struct Replica {
    massa: Proc,
    _function: Proc,
    _data: TempDir,
}

impl Cluster {
    /// Namespaces for `nodes` replicas (none started) and PostgreSQL.
    fn new(nodes: usize) -> Cluster {
        let net = Net::new(nodes);
        let pg = Postgres::start_on(net.shared(), &net.cidr());
        let help = std::process::Command::new(env!("CARGO_BIN_EXE_massa")).arg("--help").output().unwrap();
        let membership = String::from_utf8_lossy(&help.stdout).contains("--cluster-seeds");
        Cluster { replicas: (0..nodes).map(|_| None).collect(), pg, net, membership }
    }

    /// Starts replica `i` (its function, then massa) and waits until ready.
    fn start(&mut self, i: usize) {
        let mut function = self.net.command(i, env!("CARGO_BIN_EXE_massa-example-fn"));
        function.args(["--port", &FN_PORT.to_string()]);
        let function = Proc::spawn_command(function);
        function.must_log("listening on");
        let data = TempDir::new("cluster");
        let addr = self.net.addr(i).to_string();
        let mut cmd = self.net.command(i, env!("CARGO_BIN_EXE_massa"));
        cmd.args(["--data-dir", data.path(), "--user-function-port", &FN_PORT.to_string()])
            .args(["--http-interface", &addr, "--http-port", &HTTP_PORT.to_string()])
            .args(["--admin-interface", &addr, "--admin-port", &ADMIN_PORT.to_string()])
            .args(["--store", "postgres", "--postgres-url", &self.pg.url_at(self.net.shared())])
            .args(["--advertise-address", &self.name(i), "--lease-duration", "2s"]);
        if self.membership {
            cmd.args(["--cluster-port", &GOSSIP_PORT.to_string()]);
            cmd.args(["--cluster-seeds", &format!("{}:{GOSSIP_PORT}", self.net.addr(0))]);
        }
        let mut massa = Proc::spawn_command(cmd);
        let start = Instant::now();
        while http_get_at(&addr, ADMIN_PORT, "/health/ready").map(|(s, _)| s) != Some(200) {
            assert!(start.elapsed() < PATIENCE, "replica {i} never became ready; log:\n{}", massa.log());
            assert!(massa.child.try_wait().unwrap().is_none(), "replica {i} exited; log:\n{}", massa.log());
            thread::sleep(Duration::from_millis(50));
        }
        self.replicas[i] = Some(Replica { massa, _function: function, _data: data });
    }

    /// Namespaces for `nodes` replicas, the first `up` of them started and
    /// settled.
    fn running(nodes: usize, up: usize) -> Cluster {
        let mut cluster = Cluster::new(nodes);
        for i in 0..up {
            cluster.start(i);
        }
        cluster.settle(&(0..up).collect::<Vec<_>>());
        cluster
    }

    /// Waits until every replica in `running` sees exactly those replicas
    /// serving (gossip settled: they agree on the placement), so a load
    /// that starts after it meets no start-up window.
    fn settle(&self, running: &[usize]) {
        let mut want: Vec<String> = running.iter().map(|&i| self.name(i)).collect();
        want.sort();
        let start = Instant::now();
        for &i in running {
            loop {
                let view = http_get_at(&self.net.addr(i).to_string(), ADMIN_PORT, "/cluster").map(|(_, body)| body).unwrap_or_default();
                let seen: Vec<String> = serde_json::from_str::<serde_json::Value>(&view)
                    .ok()
                    .and_then(|v| v["members"].as_array().cloned())
                    .unwrap_or_default()
                    .iter()
                    .filter(|m| m["state"] == "serving")
                    .filter_map(|m| m["id"].as_str().map(str::to_owned))
                    .collect();
                if seen == want {
                    break;
                }
                assert!(start.elapsed() < PATIENCE, "replica {i} never saw {want:?} serving; its view:\n{view}");
                thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Kills replica `i` with SIGKILL; returns when it is gone.
    fn kill(&mut self, i: usize) {
        let mut replica = self.replicas[i].take().expect("a running replica");
        replica.massa.signal(libc::SIGKILL);
        replica.massa.must_exit();
    }

    /// Stops replica `i` with SIGTERM (drain, release its leases).
    fn stop(&mut self, i: usize) {
        let mut replica = self.replicas[i].take().expect("a running replica");
        replica.massa.signal(libc::SIGTERM);
        assert_eq!(replica.massa.must_exit(), 0, "{}", replica.massa.log());
    }

    /// Replica `i`'s advertised address: its lease owner name.
    fn name(&self, i: usize) -> String {
        format!("{}:{HTTP_PORT}", self.net.addr(i))
    }

    fn sql(&self) -> ::postgres::Client {
        ::postgres::Client::connect(&self.pg.url(), ::postgres::NoTls).expect("connecting to the test's PostgreSQL")
    }

    /// The sum of every series of `name` on replica `i`'s admin port, if
    /// it has that metric.
    fn metric(&self, i: usize, name: &str) -> Option<u64> {
        let (_, body) = http_get_at(&self.net.addr(i).to_string(), ADMIN_PORT, "/metrics")?;
        let values: Vec<u64> = body
            .lines()
            .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '{'])))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as u64)
            .collect();
        (!values.is_empty()).then(|| values.iter().sum())
    }

    /// [`Cluster::metric`] summed over replicas `nodes`.
    fn metric_total(&self, nodes: &[usize], name: &str) -> u64 {
        nodes.iter().filter_map(|&i| self.metric(i, name)).sum()
    }

    /// Waits until no shard of the carts is held by `owner`, at most
    /// `bound` from `since`; returns when that was seen. Past the bound it
    /// panics with what every PostgreSQL session was doing.
    fn moved_from(&self, owner: &str, since: Instant, bound: Duration) -> Instant {
        let ours = cart_shards();
        let mut sql = self.sql();
        loop {
            let held: Vec<i32> = sql
                .query("SELECT shard FROM massa_leases WHERE owner = $1", &[&owner])
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .filter(|s| ours.contains(s))
                .collect();
            if held.is_empty() {
                return Instant::now();
            }
            let sessions: Vec<String> = sql
                .query("SELECT client_addr::text, state, wait_event_type, wait_event, left(query, 90) FROM pg_stat_activity WHERE datname = 'postgres' AND pid <> pg_backend_pid()", &[])
                .unwrap()
                .iter()
                .map(|r| format!("{:?} {:?} {:?}/{:?} {:?}", r.get::<_, Option<String>>(0), r.get::<_, Option<String>>(1), r.get::<_, Option<String>>(2), r.get::<_, Option<String>>(3), r.get::<_, Option<String>>(4)))
                .collect();
            assert!(since.elapsed() < bound, "{owner} still holds shards {held:?} {:?} on; PostgreSQL sessions:\n{}", since.elapsed(), sessions.join("\n"));
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The shards the carts under load are in.
fn cart_shards() -> HashSet<i32> {
    (0..KEYS)
        .map(|k| {
            let (pid, eid) = persisted(k);
            (entity_hash(pid, &eid) % SHARDS) as i32
        })
        .collect()
}

/// Cart `k`'s service and user id.
fn key(k: usize) -> (&'static str, String) {
    if k < EVENT_SOURCED {
        (CART, format!("cart-{k}"))
    } else {
        (VALUE_CART, format!("value-{k}"))
    }
}

/// Cart `k`'s persistence id (as the example function declares it) and
/// entity id.
fn persisted(k: usize) -> (&'static str, String) {
    let (_, eid) = key(k);
    (if k < EVENT_SOURCED { "shopping-cart" } else { "value-shopping-cart" }, eid)
}

// === The load ===

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Ok,
    Failed(Code, String),
    NoReply,
}

/// One AddItem sent: to which replica, for which cart, and what came back.
#[derive(Debug, Clone)]
struct Record {
    key: usize,
    node: usize,
    product: String,
    sent: Instant,
    done: Instant,
    outcome: Outcome,
}

/// Workers sending AddItem with a unique product each to the carts, each
/// worker one task per replica (so a replica that does not answer stalls
/// only its own tasks), sending while that replica is in `targets`.
struct Load {
    stop: AtomicBool,
    hosts: Vec<String>,
    targets: Mutex<Vec<usize>>,
    records: Mutex<Vec<Record>>,
}

struct Running {
    load: Arc<Load>,
    thread: thread::JoinHandle<()>,
}

impl Load {
    fn start(cluster: &Cluster, targets: &[usize]) -> Running {
        let hosts = (0..cluster.net.len()).map(|i| cluster.net.addr(i).to_string()).collect();
        let load = Arc::new(Load { stop: AtomicBool::new(false), hosts, targets: Mutex::new(targets.to_vec()), records: Mutex::default() });
        let shared = load.clone();
        let thread = thread::spawn(move || {
            run(async move {
                let tasks: Vec<_> =
                    (0..WORKERS).flat_map(|w| (0..shared.hosts.len()).map(move |node| (w, node))).map(|(w, node)| monoio::spawn(shared.clone().work(w, node))).collect();
                for task in tasks {
                    task.await;
                }
            })
        });
        Running { load, thread }
    }

    async fn work(self: Arc<Load>, w: usize, node: usize) {
        let client = Client::at(&self.hosts[node], HTTP_PORT);
        for n in 0..MAX_PER_WORKER {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            monoio::time::sleep(PACE).await;
            if !self.targets.lock().unwrap().contains(&node) {
                continue;
            }
            let k = (w + n * WORKERS) % KEYS;
            let (service, user) = key(k);
            let product = format!("w{w}-r{node}-{n}");
            let sent = Instant::now();
            let outcome = match monoio::time::timeout(CALL_BOUND, add(&client, service, &user, &product, 1, &product)).await {
                Ok(Ok(())) => Outcome::Ok,
                Ok(Err(status)) => Outcome::Failed(status.code, status.message),
                Err(_) => Outcome::NoReply,
            };
            self.records.lock().unwrap().push(Record { key: k, node, product, sent, done: Instant::now(), outcome });
        }
    }
}

impl Running {
    /// From now on, commands go to these replicas only.
    fn target(&self, targets: &[usize]) {
        *self.load.targets.lock().unwrap() = targets.to_vec();
    }

    /// Stops the workers; every command they sent.
    fn finish(self) -> Vec<Record> {
        self.load.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the load thread");
        std::mem::take(&mut *self.load.records.lock().unwrap())
    }
}

// === Lease sampling ===

/// Samples `massa_leases` until stopped, to show that an epoch of a shard
/// only ever had one owner and epochs never went back.
struct LeaseWatch {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<Vec<Vec<(i32, String, i64)>>>,
}

impl LeaseWatch {
    fn start(cluster: &Cluster) -> LeaseWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let mut sql = cluster.sql();
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let mut samples = Vec::new();
            // At most a few minutes' worth, however long the test runs.
            for _ in 0..3000 {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                // An error: the test is over (PostgreSQL stopped).
                let Ok(rows) = sql.query("SELECT shard, owner, epoch FROM massa_leases", &[]) else { break };
                samples.push(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect());
                thread::sleep(Duration::from_millis(100));
            }
            samples
        });
        LeaseWatch { stop, thread }
    }

    /// Stops sampling; panics if any epoch had two owners or went back.
    fn check(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self.thread.join().expect("the lease sampler");
        let mut owner_of: HashMap<(i32, i64), String> = HashMap::new();
        let mut last_epoch: HashMap<i32, i64> = HashMap::new();
        for (n, sample) in samples.iter().enumerate() {
            for (shard, owner, epoch) in sample {
                let first = owner_of.entry((*shard, *epoch)).or_insert_with(|| owner.clone());
                assert_eq!(first, owner, "shard {shard} epoch {epoch} had two owners (sample {n})");
                let last = last_epoch.entry(*shard).or_insert(*epoch);
                assert!(*epoch >= *last, "shard {shard}: epoch went back from {last} to {epoch} (sample {n})");
                *last = *epoch;
            }
        }
        samples.len()
    }
}

// === Checks ===

/// Checks what PostgreSQL holds against the commands: every event-sourced
/// journal is gap-free from 1, no command is in it twice, every
/// acknowledged one is in it; every value cart has every acknowledged item
/// once. Returns the journals' products by cart.
fn check_store(cluster: &Cluster, records: &[Record]) -> BTreeMap<usize, Vec<String>> {
    let mut acked: HashMap<usize, Vec<&str>> = HashMap::new();
    for r in records.iter().filter(|r| r.outcome == Outcome::Ok) {
        acked.entry(r.key).or_default().push(&r.product);
    }
    let mut sql = cluster.sql();
    let mut stored = BTreeMap::new();
    for k in 0..KEYS {
        let (pid, eid) = persisted(k);
        let items: Vec<(u64, String)> = if k < EVENT_SOURCED {
            let (first, last) = (keys::event(pid, &eid, 0), keys::event(pid, &eid, u64::MAX));
            let rows = sql.query("SELECT key, value FROM massa_kv WHERE key BETWEEN $1 AND $2 ORDER BY key", &[&first, &last]).unwrap();
            rows.iter()
                .map(|r| {
                    let (key, value): (Vec<u8>, Vec<u8>) = (r.get(0), r.get(1));
                    let seq = keys::trailing_u64(&key).unwrap();
                    let any = Any::decode(value.as_slice()).unwrap();
                    (seq, ItemAdded::decode(&any.value[..]).unwrap().item.unwrap().product_id)
                })
                .collect()
        } else {
            let row = sql.query_opt("SELECT value FROM massa_kv WHERE key = $1", &[&keys::value(pid, &eid)]).unwrap();
            let cart = row.map(|r| ValueCart::decode(&Any::decode(r.get::<_, Vec<u8>>(0).as_slice()).unwrap().value[..]).unwrap());
            let items = cart.map(|c| c.items).unwrap_or_default();
            for item in &items {
                assert_eq!(item.quantity, 1, "{eid}: {} added more than once", item.product_id);
            }
            items.into_iter().map(|i| (0, i.product_id)).collect()
        };
        if k < EVENT_SOURCED {
            let seqs: Vec<u64> = items.iter().map(|(s, _)| *s).collect();
            assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "{eid}: journal not gap-free from 1");
        }
        let products: Vec<String> = items.into_iter().map(|(_, p)| p).collect();
        let unique: HashSet<&str> = products.iter().map(String::as_str).collect();
        assert_eq!(unique.len(), products.len(), "{eid}: a command stored twice");
        let acked = acked.remove(&k).unwrap_or_default();
        let lost: Vec<&&str> = acked.iter().filter(|p| !unique.contains(**p)).collect();
        assert!(lost.is_empty(), "{eid}: acknowledged commands missing from PostgreSQL: {lost:?}");
        assert!(products.len() >= acked.len());
        stored.insert(k, products);
    }
    stored
}

/// Asserts that every failed command failed with UNAVAILABLE (it did not
/// run: a client may retry it) or, when the proxy could not know, with
/// DEADLINE_EXCEEDED saying its outcome is unknown (it may have run: the
/// store checks allow it either way), and only while ownership was
/// moving: its call overlaps one of `windows` `(from, to)`.
#[track_caller]
fn assert_failures_within(records: &[Record], windows: &[(Instant, Instant)], t0: Instant) {
    let failed: Vec<&Record> = records.iter().filter(|r| r.outcome != Outcome::Ok).collect();
    let example = |bad: &[&Record]| -> Vec<String> {
        bad.iter().take(3).map(|r| format!("{} to replica {} at {:?}: {:?}", r.product, r.node, r.sent - t0, r.outcome)).collect()
    };
    let unknown = |r: &Record| matches!(&r.outcome, Outcome::Failed(Code::DeadlineExceeded, m) if m.starts_with("outcome unknown: "));
    let other: Vec<&Record> =
        failed.iter().copied().filter(|r| !matches!(r.outcome, Outcome::Failed(Code::Unavailable, _)) && !unknown(r)).collect();
    assert!(
        other.is_empty(),
        "{} commands failed other than UNAVAILABLE or outcome unknown, e.g. {:#?}\noutcomes:\n{}",
        other.len(),
        example(&other),
        summary(records)
    );
    let (failures, unknowns) = (failed.len(), failed.iter().filter(|r| unknown(r)).count());
    let outside: Vec<&Record> = failed.into_iter().filter(|r| !windows.iter().any(|&(from, to)| r.done >= from && r.sent <= to)).collect();
    let windows: Vec<_> = windows.iter().map(|(f, t)| (*f - t0, *t - t0)).collect();
    assert!(
        outside.is_empty(),
        "{} commands failed outside the windows {windows:?}, e.g. {:#?}\noutcomes:\n{}",
        outside.len(),
        example(&outside),
        summary(records)
    );
    eprintln!("{failures} of {} commands failed, {unknowns} of them with outcome unknown", records.len());
}

/// Outcomes per replica, for failure messages; entity names and addresses
/// left out so that like failures count together.
fn summary(records: &[Record]) -> String {
    let mut counts: BTreeMap<(usize, String), usize> = BTreeMap::new();
    for r in records {
        let what = match &r.outcome {
            Outcome::Ok => "ok".to_owned(),
            Outcome::Failed(code, message) => {
                let words: Vec<&str> = message.split(' ').map(|w| if w.contains(['/', '(', ':']) { "…" } else { w }).collect();
                format!("{code:?}: {}", words.join(" "))
            }
            Outcome::NoReply => format!("no reply within {CALL_BOUND:?}"),
        };
        *counts.entry((r.node, what)).or_default() += 1;
    }
    counts.iter().map(|((node, what), n)| format!("  replica {node}: {n} x {what}\n")).collect()
}

/// Every replica in `nodes` serves every cart as PostgreSQL holds it
/// (through forwarding for the carts it does not own).
fn assert_every_replica_serves(cluster: &Cluster, nodes: &[usize], stored: &BTreeMap<usize, Vec<String>>) {
    run(async {
        for &i in nodes {
            let c = Client::at(&cluster.net.addr(i).to_string(), HTTP_PORT);
            for (&k, products) in stored {
                let (service, user) = key(k);
                let items = eventually(&format!("replica {i} serving {user}"), || async { cart(&c, service, &user).await.ok() }).await;
                let mut expected: Vec<String> = products.iter().map(|p| format!("{p} x1")).collect();
                let mut got = items;
                expected.sort();
                got.sort();
                assert_eq!(got, expected, "replica {i}: {user}");
            }
        }
    });
}

// === Scenarios ===

/// The harness itself: a node cut off from its peers still reaches
/// PostgreSQL, cut off from everything it reaches neither, the test reaches
/// it throughout, and healing restores all of it.
#[test]
fn partitions_cut_what_they_say_and_heal() {
    let cluster = Cluster::new(2);
    let listener = |i: usize| {
        let mut cmd = cluster.net.command(i, env!("CARGO_BIN_EXE_massa-example-fn"));
        cmd.args(["--host", &cluster.net.addr(i).to_string(), "--port", &FN_PORT.to_string()]);
        let p = Proc::spawn_command(cmd);
        p.must_log("listening on");
        p
    };
    let _listeners = [listener(0), listener(1)];
    let (peer, pg, me) = (cluster.net.addr(0).to_string(), cluster.net.shared().to_string(), cluster.net.addr(1).to_string());
    let pg_port = cluster.pg.port().to_string();
    // Node 1 connecting to `addr:port` (bash's /dev/tcp), within a second.
    let reaches = |addr: &str, port: &str| {
        let mut cmd = cluster.net.command(1, "timeout");
        cmd.args(["1", "bash", "-c", &format!("exec 3<>/dev/tcp/{addr}/{port}")]);
        cmd.stderr(std::process::Stdio::null()).status().unwrap().success()
    };
    let test_reaches = || std::net::TcpStream::connect_timeout(&format!("{me}:{FN_PORT}").parse().unwrap(), Duration::from_secs(1)).is_ok();
    let fn_port = FN_PORT.to_string();
    assert!(reaches(&peer, &fn_port) && reaches(&pg, &pg_port) && test_reaches(), "before any partition");
    cluster.net.partition(1, Cut::Peers);
    assert!(!reaches(&peer, &fn_port), "cut off from its peers");
    assert!(reaches(&pg, &pg_port) && test_reaches(), "PostgreSQL and the test still reached");
    cluster.net.partition(1, Cut::Everything);
    assert!(!reaches(&peer, &fn_port) && !reaches(&pg, &pg_port), "cut off from everything");
    assert!(test_reaches(), "the test still reaches it");
    cluster.net.heal(1);
    assert!(reaches(&peer, &fn_port) && reaches(&pg, &pg_port) && test_reaches(), "healed");
}

#[test]
fn steady_state_every_proxy_serves_every_cart_and_every_acked_command_is_stored() {
    let cluster = Cluster::running(3, 3);
    let t0 = Instant::now();
    let watch = LeaseWatch::start(&cluster);
    let load = Load::start(&cluster, &[0, 1, 2]);
    thread::sleep(Duration::from_secs(6));
    let records = load.finish();
    watch.check();
    let stored = check_store(&cluster, &records);
    assert_failures_within(&records, &[], t0);
    assert_every_replica_serves(&cluster, &[0, 1, 2], &stored);
    assert!(cluster.metric_total(&[0, 1, 2], "massa_forwarded_calls_total") > 0, "no call forwarded");
    assert!(cluster.metric_total(&[0, 1, 2], "massa_lease_renewals_total") > 0, "no lease renewed");
}

#[test]
fn a_killed_proxy_s_shards_move_and_no_acked_command_is_lost() {
    let mut cluster = Cluster::running(3, 3);
    let t0 = Instant::now();
    let watch = LeaseWatch::start(&cluster);
    let load = Load::start(&cluster, &[0, 1, 2]);
    thread::sleep(Duration::from_secs(3));
    // Clients stop choosing it as it dies (as a balancer would).
    load.target(&[0, 1]);
    let killed = Instant::now();
    cluster.kill(2);
    let moved = cluster.moved_from(&cluster.name(2), killed, LEASE + MOVE_MARGIN);
    thread::sleep(Duration::from_secs(3));
    let records = load.finish();
    watch.check();
    let stored = check_store(&cluster, &records);
    assert_failures_within(&records, &[(killed, moved + SETTLE)], t0);
    assert_every_replica_serves(&cluster, &[0, 1], &stored);
    assert!(cluster.metric_total(&[0, 1], "massa_ownership_changes_total") > 0, "the survivors counted no ownership change");
}

#[test]
fn a_partitioned_proxy_never_writes_beside_the_new_owner_and_rejoins() {
    let cluster = Cluster::running(3, 3);
    let t0 = Instant::now();
    let watch = LeaseWatch::start(&cluster);
    // The test's clients still reach the partitioned proxy.
    let load = Load::start(&cluster, &[0, 1, 2]);
    thread::sleep(Duration::from_secs(3));
    let from_peers = Instant::now();
    cluster.net.partition(2, Cut::Peers);
    thread::sleep(LEASE * 3);
    let from_all = Instant::now();
    cluster.net.partition(2, Cut::Everything);
    cluster.moved_from(&cluster.name(2), from_all, LEASE + MOVE_MARGIN);
    thread::sleep(LEASE);
    let healed = Instant::now();
    cluster.net.heal(2);
    thread::sleep(LEASE * 3);
    let records = load.finish();
    let samples = watch.check();
    assert!(samples > 0);

    // Zero stale writes: the journals hold every acknowledged command once.
    let stored = check_store(&cluster, &records);
    let isolated: Vec<&Record> = records.iter().filter(|r| r.node == 2 && r.sent >= from_all && r.done <= healed).collect();
    let refused = isolated.iter().filter(|r| r.outcome != Outcome::Ok).count();
    let fenced = cluster.metric(2, "massa_fencing_rejections_total");
    eprintln!("while cut off from PostgreSQL, replica 2 refused {refused} of {} commands; fencing rejections: {fenced:?}", isolated.len());
    assert!(refused > 0, "replica 2 acknowledged every command while cut off from PostgreSQL:\n{}", summary(&records));
    assert_failures_within(&records, &[(from_peers, healed + SETTLE)], t0);
    assert_every_replica_serves(&cluster, &[0, 1, 2], &stored);
}

#[test]
fn commands_keep_succeeding_while_the_cluster_scales_from_three_to_four_to_two() {
    let mut cluster = Cluster::running(4, 3);
    let t0 = Instant::now();
    let watch = LeaseWatch::start(&cluster);
    let load = Load::start(&cluster, &[0, 1, 2]);
    thread::sleep(Duration::from_secs(3));
    let up = Instant::now();
    cluster.start(3);
    load.target(&[0, 1, 2, 3]);
    thread::sleep(Duration::from_secs(4));
    load.target(&[0, 1]);
    let down = Instant::now();
    cluster.stop(2);
    cluster.stop(3);
    let stopped = Instant::now();
    thread::sleep(Duration::from_secs(4));
    let records = load.finish();
    watch.check();
    let stored = check_store(&cluster, &records);
    assert_failures_within(&records, &[(up, up + SETTLE), (down, stopped + SETTLE)], t0);
    let ours = cart_shards();
    let mut sql = cluster.sql();
    let live = [cluster.name(0), cluster.name(1)];
    for row in sql.query("SELECT shard, owner FROM massa_leases WHERE expires_at > now()", &[]).unwrap() {
        let (shard, owner): (i32, String) = (row.get(0), row.get(1));
        assert!(!ours.contains(&shard) || live.contains(&owner), "shard {shard} held by {owner}, which has stopped");
    }
    assert_every_replica_serves(&cluster, &[0, 1], &stored);
}
