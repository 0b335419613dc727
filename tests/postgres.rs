//! `--store postgres` end to end: the real `massa` binary on a throwaway
//! PostgreSQL server (tests/support/postgres.rs) in front of the example
//! function's carts. Each proxy start gets a fresh `--data-dir`, so state
//! that survives a restart can only have come from PostgreSQL.

mod support;

use massa::grpc::Code;
use massa::proto::com::example::shoppingcart::GetShoppingCart;
use support::{cart::*, postgres::Postgres, *};

/// Always the same replica: a restarted one takes its shard leases back at
/// once, even from a killed predecessor.
fn start_on(pg: &Postgres, fn_port: u16) -> Massa {
    start_massa(fn_port, &["--store", "postgres", "--postgres-url", &pg.url(), "--durability", "sync", "--advertise-address", "replica-1:9000"])
}

#[test]
fn carts_on_postgres_survive_a_proxy_restart() {
    let pg = Postgres::start();
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &["--snapshot-every", "2"]);
    let m = start_on(&pg, fn_port);
    m.proc.must_log("PostgreSQL store open");
    run(async {
        let c = Client::new(m.port);
        for (product, qty) in [("apple", 1), ("pear", 2), ("apple", 3)] {
            add(&c, CART, "alice", product, qty, product).await.unwrap();
        }
        assert_eq!(cart(&c, CART, "alice").await.unwrap(), ["apple x4", "pear x2"]);
        add(&c, VALUE_CART, "bob", "tea", 2, "Tea").await.unwrap();
        add(&c, VALUE_CART, "carol", "milk", 1, "Milk").await.unwrap();
        unary(&c, VALUE_CART, "RemoveCart", &GetShoppingCart { user_id: "carol".into() }).await.unwrap();
    });
    drop(m);
    let m = start_on(&pg, fn_port);
    run(async {
        let c = Client::new(m.port);
        assert_eq!(cart(&c, CART, "alice").await.unwrap(), ["apple x4", "pear x2"], "snapshot and journal from PostgreSQL");
        add(&c, CART, "alice", "kiwi", 1, "Kiwi").await.unwrap();
        assert_eq!(cart(&c, CART, "alice").await.unwrap(), ["apple x4", "pear x2", "kiwi x1"]);
        assert_eq!(cart(&c, VALUE_CART, "bob").await.unwrap(), ["tea x2"]);
        assert_eq!(cart(&c, VALUE_CART, "carol").await.unwrap(), Vec::<String>::new(), "deleted");
    });
}

#[test]
fn commands_fail_naming_postgres_while_it_is_down_and_succeed_once_it_is_back() {
    let mut pg = Postgres::start();
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &[]);
    let m = start_on(&pg, fn_port);
    let c = Client::new(m.port);
    run(async { add(&c, CART, "dana", "apple", 1, "Apple").await.unwrap() });
    pg.stop();
    let err = run(async { add(&c, CART, "dana", "pear", 1, "Pear").await.unwrap_err() });
    assert_eq!(err.code, Code::Unavailable, "{err:?}");
    assert!(err.message.contains("PostgreSQL at 127.0.0.1:"), "{err:?}");
    pg.start_server();
    // The proxy reconnects on its own (after its backoff); bounded retries.
    run(async {
        eventually("a command after PostgreSQL came back", || async { add(&c, CART, "dana", "plum", 1, "Plum").await.ok() }).await
    });
    let items = run(async { cart(&c, CART, "dana").await.unwrap() });
    assert_eq!(items, ["apple x1", "plum x1"], "the failed command left nothing behind");
    assert!(m.proc.log().contains("reconnected to PostgreSQL"), "{}", m.proc.log());
}

#[test]
fn the_proxy_will_not_start_without_a_reachable_postgres() {
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &[]);
    let mut m = spawn_massa(fn_port, &["--store", "postgres"]);
    assert_ne!(m.proc.must_exit(), 0);
    assert!(m.proc.log().contains("--store postgres needs --postgres-url"), "{}", m.proc.log());

    let mut pg = Postgres::start();
    let url = pg.url();
    pg.stop();
    let mut m = spawn_massa(fn_port, &["--store", "postgres", "--postgres-url", &url]);
    assert_ne!(m.proc.must_exit(), 0);
    assert!(m.proc.log().contains("PostgreSQL at 127.0.0.1:"), "{}", m.proc.log());
}

/// A proxy that names itself `name` to the others, with short leases.
fn start_replica(pg: &Postgres, fn_port: u16, name: &str) -> Massa {
    let url = pg.url();
    start_massa(fn_port, &["--store", "postgres", "--postgres-url", &url, "--advertise-address", name, "--lease-duration", "2s"])
}

#[test]
fn one_replica_owns_a_cart_the_other_refuses_it_until_the_owner_is_gone() {
    let pg = Postgres::start();
    let (fn_a, fn_b, fn_c) = (free_port(), free_port(), free_port());
    let _functions = [start_example_fn(fn_a, &[]), start_example_fn(fn_b, &[]), start_example_fn(fn_c, &[])];
    let mut a = start_replica(&pg, fn_a, "proxy-a:9000");
    let mut b = start_replica(&pg, fn_b, "proxy-b:9000");
    let (ca, cb) = (Client::new(a.port), Client::new(b.port));
    run(async {
        add(&ca, CART, "erin", "apple", 1, "Apple").await.unwrap();
        add(&ca, CART, "erin", "pear", 2, "Pear").await.unwrap();
        for refused in [add(&cb, CART, "erin", "plum", 1, "Plum").await.unwrap_err(), cart(&cb, CART, "erin").await.unwrap_err()] {
            assert_eq!(refused.code, Code::Unavailable, "{refused:?}");
            assert!(refused.message.contains("is owned by another proxy (proxy-a:9000); retry there"), "{refused:?}");
        }
        // Other carts (in other shards) are B's to serve.
        add(&cb, CART, "frank", "tea", 1, "Tea").await.unwrap();
    });
    a.proc.signal(libc::SIGKILL);
    a.proc.must_exit();
    // A's lease runs out by the database clock; bounded retries until then.
    run(async {
        eventually("B taking erin's cart over", || async { add(&cb, CART, "erin", "plum", 1, "Plum").await.ok() }).await;
        assert_eq!(cart(&cb, CART, "erin").await.unwrap(), ["apple x1", "pear x2", "plum x1"], "A's events, then B's");
    });
    assert!(!b.proc.log().contains("already written"), "B's tag-log offsets follow A's:\n{}", b.proc.log());

    // A drained proxy releases its leases: the next one serves at once,
    // replaying the whole journal from PostgreSQL.
    b.proc.signal(libc::SIGTERM);
    assert_eq!(b.proc.must_exit(), 0);
    assert!(b.proc.log().contains("shard leases released"), "{}", b.proc.log());
    let c = start_replica(&pg, fn_c, "proxy-c:9000");
    run(async {
        let cc = Client::new(c.port);
        assert_eq!(cart(&cc, CART, "erin").await.unwrap(), ["apple x1", "pear x2", "plum x1"]);
        assert_eq!(cart(&cc, CART, "frank").await.unwrap(), ["tea x1"]);
    });
}

#[test]
fn a_write_under_a_superseded_epoch_is_refused_and_stores_nothing() {
    let pg = Postgres::start();
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &[]);
    let m = start_on(&pg, fn_port);
    m.proc.must_log("shard leases on");
    let c = Client::new(m.port);
    run(async { add(&c, CART, "gina", "apple", 1, "Apple").await.unwrap() });
    // As a takeover would, behind the proxy's back.
    let mut sql = ::postgres::Client::connect(&pg.url(), ::postgres::NoTls).unwrap();
    assert_eq!(sql.execute("UPDATE massa_leases SET epoch = epoch + 1", &[]).unwrap(), 1, "one shard held");
    let err = run(async { add(&c, CART, "gina", "pear", 1, "Pear").await.unwrap_err() });
    assert_eq!(err.code, Code::Unavailable, "{err:?}");
    assert!(err.message.contains("lease lost"), "{err:?}");
    // The proxy finds the lease lost and takes it again (bounded retries).
    run(async {
        eventually("a write under a fresh lease", || async { add(&c, CART, "gina", "kiwi", 1, "Kiwi").await.ok() }).await;
        assert_eq!(cart(&c, CART, "gina").await.unwrap(), ["apple x1", "kiwi x1"], "nothing of the refused batch");
    });

    // The shard count is the cluster's, fixed on its first start.
    let mut other = spawn_massa(fn_port, &["--store", "postgres", "--postgres-url", &pg.url(), "--shards", "64"]);
    assert_ne!(other.proc.must_exit(), 0);
    assert!(other.proc.log().contains("set up with 1024 shards"), "{}", other.proc.log());
}

#[test]
fn a_paused_owner_resumes_to_find_its_shard_taken_and_writes_nothing() {
    let pg = Postgres::start();
    let (fn_a, fn_b) = (free_port(), free_port());
    let _functions = [start_example_fn(fn_a, &[]), start_example_fn(fn_b, &[])];
    let a = start_replica(&pg, fn_a, "proxy-a:9000");
    let b = start_replica(&pg, fn_b, "proxy-b:9000");
    let (ca, cb) = (Client::new(a.port), Client::new(b.port));
    run(async { add(&ca, CART, "hugo", "apple", 1, "Apple").await.unwrap() });
    // A stops renewing without crashing (a long GC pause, a frozen VM).
    a.proc.signal(libc::SIGSTOP);
    run(async {
        eventually("B taking hugo's cart over", || async { add(&cb, CART, "hugo", "pear", 1, "Pear").await.ok() }).await;
    });
    a.proc.signal(libc::SIGCONT);
    run(async {
        let stale = add(&ca, CART, "hugo", "plum", 1, "Plum").await.unwrap_err();
        assert_eq!(stale.code, Code::Unavailable, "{stale:?}");
        let refused = eventually("A naming the new owner", || async {
            add(&ca, CART, "hugo", "plum", 1, "Plum").await.err().filter(|e| e.message.contains("owned by another proxy"))
        })
        .await;
        assert!(refused.message.contains("(proxy-b:9000)"), "{refused:?}");
        assert_eq!(cart(&cb, CART, "hugo").await.unwrap(), ["apple x1", "pear x1"], "nothing of A's after the takeover");
    });
}
