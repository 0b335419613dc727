//! `--store postgres` end to end: the real `massa` binary on a throwaway
//! PostgreSQL server (tests/support/postgres.rs) in front of the example
//! function's carts. Each proxy start gets a fresh `--data-dir`, so state
//! that survives a restart can only have come from PostgreSQL.

mod support;

use massa::grpc::Code;
use massa::proto::com::example::shoppingcart::GetShoppingCart;
use support::{cart::*, postgres::Postgres, *};

fn start_on(pg: &Postgres, fn_port: u16) -> Massa {
    start_massa(fn_port, &["--store", "postgres", "--postgres-url", &pg.url(), "--durability", "sync"])
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
