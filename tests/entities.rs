//! Event-sourced and value entities end to end: the real `massa` binary with
//! RocksDB in a temp dir, in front of the real example function's shopping
//! carts, called through the proxy.

mod support;

use std::time::Duration;

use massa::grpc::{encode_prost, Code};
use massa::proto::com::example::shoppingcart::{Cart, GetShoppingCart, RemoveLineItem};
use massa::proto::example::echo::EchoRequest;
use prost::Message;
use support::{cart::*, *};

/// Waits until the function's log contains `needle` (from inside a run).
async fn logged(f: &Proc, needle: &str) {
    eventually(needle, || async { f.log().contains(needle).then_some(()) }).await
}

#[test]
fn event_sourced_cart_replays_from_snapshot_and_journal_after_a_proxy_restart() {
    let fn_port = free_port();
    let f = start_example_fn(fn_port, &["--snapshot-every", "2"]);
    let data = TempDir::new("replay");
    let m = start_massa(fn_port, &["--data-dir", data.path()]);
    run(async {
        let c = Client::new(m.port);
        for (product, qty) in [("apple", 1), ("pear", 2), ("apple", 3)] {
            add(&c, CART, "alice", product, qty, product).await.unwrap();
        }
        assert_eq!(cart(&c, CART, "alice").await.unwrap(), ["apple x4", "pear x2"]);
        logged(&f, "cart alice activated: snapshot None, replayed 0, first command id 1").await;
    });
    drop(m);
    let m = start_massa(fn_port, &["--data-dir", data.path()]);
    run(async {
        let c = Client::new(m.port);
        assert_eq!(cart(&c, CART, "alice").await.unwrap(), ["apple x4", "pear x2"]);
        // Snapshot after the 2nd event, then the 3rd event replayed.
        logged(&f, "cart alice activated: snapshot Some(2), replayed 1, first command id 1").await;
        let err = unary(&c, CART, "RemoveItem", &RemoveLineItem { user_id: "alice".into(), product_id: "kiwi".into() })
            .await
            .unwrap_err();
        assert_eq!((err.code, err.message.as_str()), (Code::Unknown, "Cannot remove item kiwi because it is not in the cart."));
    });
}

#[test]
fn value_entity_cart_updates_deletes_and_survives_restart() {
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &[]);
    let data = TempDir::new("value");
    let m = start_massa(fn_port, &["--data-dir", data.path()]);
    run(async {
        let c = Client::new(m.port);
        assert_eq!(cart(&c, VALUE_CART, "bob").await.unwrap(), Vec::<String>::new(), "state is empty, not absent");
        add(&c, VALUE_CART, "bob", "tea", 2, "Tea").await.unwrap();
        add(&c, VALUE_CART, "carol", "milk", 1, "Milk").await.unwrap();
        unary(&c, VALUE_CART, "RemoveCart", &GetShoppingCart { user_id: "carol".into() }).await.unwrap();
    });
    drop(m);
    let m = start_massa(fn_port, &["--data-dir", data.path()]);
    run(async {
        let c = Client::new(m.port);
        assert_eq!(cart(&c, VALUE_CART, "bob").await.unwrap(), ["tea x2"]);
        assert_eq!(cart(&c, VALUE_CART, "carol").await.unwrap(), Vec::<String>::new(), "deleted");
    });
}

#[test]
fn missing_entity_key_is_invalid_argument() {
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &[]);
    let m = start_massa(fn_port, &["--store", "memory"]);
    run(async {
        let c = Client::new(m.port);
        let err = cart(&c, CART, "").await.unwrap_err();
        assert_eq!(err.code, Code::InvalidArgument, "{err}");
        assert!(err.message.contains("no value for its entity key"), "{err}");
        assert_eq!(cart(&c, CART, "dave").await.unwrap(), Vec::<String>::new(), "proxy keeps serving");
    });
}

#[test]
fn failures_restart_and_protocol_violations_reactivate_without_losing_events() {
    let fn_port = free_port();
    let f = start_example_fn(fn_port, &[]);
    let m = start_massa(fn_port, &[]);
    run(async {
        let c = Client::new(m.port);
        add(&c, CART, "erin", "apple", 1, "Apple").await.unwrap();
        // restart=true: the failure reaches the client, the entity re-activates at once and replays.
        let err = add(&c, CART, "erin", "restart!", 1, "x").await.unwrap_err();
        assert_eq!((err.code, err.message.as_str()), (Code::Unknown, "restarting on request"));
        logged(&f, "cart erin stream closed by the proxy").await;
        add(&c, CART, "erin", "pear", 1, "Pear").await.unwrap();
        logged(&f, "cart erin activated: snapshot None, replayed 1, first command id 1").await;
        // A reply with the wrong command id crashes the entity and is reported.
        let err = add(&c, CART, "erin", "bad-id!", 1, "x").await.unwrap_err();
        assert_eq!(err.code, Code::Internal, "{err}");
        logged(&f, "reportError: Incorrect command id in reply, expecting 2 but got 1002").await;
        // A reply with no command in flight is caught with the next command.
        add(&c, CART, "erin", "extra!", 1, "x").await.unwrap();
        let err = add(&c, CART, "erin", "kiwi", 1, "Kiwi").await.unwrap_err();
        assert_eq!(err.code, Code::Internal, "{err}");
        logged(&f, "reportError: Incorrect command id in reply, expecting 2 but got 1").await;
        // A top-level failure stops it too.
        let err = add(&c, CART, "erin", "stop!", 1, "x").await.unwrap_err();
        assert_eq!((err.code, err.message.as_str()), (Code::Unknown, "entity stopped on request"));
        assert_eq!(cart(&c, CART, "erin").await.unwrap(), ["apple x1", "pear x1", "extra! x1"], "nothing acknowledged was lost");
    });
}

#[test]
fn user_function_crash_mid_command_fails_cleanly_and_recovers() {
    let fn_port = free_port();
    let f = start_example_fn(fn_port, &[]);
    let m = start_massa(fn_port, &[]);
    let f2 = run(async {
        let c = Client::new(m.port);
        add(&c, CART, "frank", "apple", 2, "Apple").await.unwrap();
        let err = add(&c, CART, "frank", "crash!", 1, "x").await.unwrap_err();
        assert_eq!(err.code, Code::Unavailable, "{err}");
        drop(f);
        let f2 = start_example_fn(fn_port, &[]);
        let back = eventually("the cart after the function restarted", || async { cart(&c, CART, "frank").await.ok() }).await;
        assert_eq!(back, ["apple x2"]);
        f2
    });
    drop(f2);
}

#[test]
fn idle_entities_passivate_and_close_both_directions() {
    let fn_port = free_port();
    let f = start_example_fn(fn_port, &["--passivation-ms", "200"]);
    let m = start_massa(fn_port, &[]);
    run(async {
        let c = Client::new(m.port);
        add(&c, CART, "gina", "apple", 1, "Apple").await.unwrap();
        logged(&f, "cart gina stream closed by the proxy").await;
        let metrics = eventually("no active entities", || async {
            http_get(m.admin, "/metrics").map(|(_, b)| b).filter(|b| b.contains("massa_active_entities 0"))
        })
        .await;
        assert!(metrics.contains("massa_entity_activations_total 1"), "{metrics}");
        assert!(metrics.contains("massa_entity_cache_hits_total 0"), "{metrics}");
        assert_eq!(cart(&c, CART, "gina").await.unwrap(), ["apple x1"], "re-activates with its events");
        logged(&f, "cart gina activated: snapshot None, replayed 1, first command id 1").await;
        let (_, metrics) = http_get(m.admin, "/metrics").unwrap();
        assert!(metrics.contains("massa_entity_cache_hits_total 1"), "served from the hot cache:\n{metrics}");
    });
}

#[test]
fn entities_on_both_cores_and_forwards_and_side_effects_between_entity_types() {
    let fn_port = free_port();
    let f = start_example_fn(fn_port, &[]);
    let m = start_massa(fn_port, &["--workers", "2"]);
    run(async {
        let c = Client::new(m.port);
        let users: Vec<String> = (0..16).map(|i| format!("user-{i}")).collect();
        let cores: std::collections::HashSet<_> = users.iter().map(|u| massa::shard::owner("shopping-cart", u, 2)).collect();
        assert_eq!(cores.len(), 2, "the keys land on both cores");
        for (i, u) in users.iter().enumerate() {
            add(&c, CART, u, "apple", i as i32 + 1, "Apple").await.unwrap();
        }
        for (i, u) in users.iter().enumerate() {
            assert_eq!(cart(&c, CART, u).await.unwrap(), [format!("apple x{}", i + 1)]);
        }
        // Entity → action: a synchronous side effect recorded by Echo.
        add(&c, CART, "user-3", "pear", 1, "notify").await.unwrap();
        let recorded = c.echo("Recorded", &[text_req("")]).await.unwrap();
        assert!(recorded[0].contains("added pear to user-3"), "{recorded:?}");
        // Action → entity: Echo forwards to the cart's GetCart (field 1 is the key).
        let fwd = EchoRequest { text: "user-3".into(), forward_to: format!("{CART}/GetCart"), ..Default::default() };
        let (_, msgs, status) = c.call("/example.echo.Echo/Say", None, vec![encode_prost(&fwd)]).await;
        status.unwrap();
        let forwarded = Cart::decode(msgs[0].clone()).unwrap();
        assert_eq!(forwarded.items.len(), 2, "{forwarded:?}");
    });
    drop(f);
}

#[test]
fn a_full_entity_queue_is_resource_exhausted() {
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &[]);
    let m = start_massa(fn_port, &["--entity-queue", "2", "--store", "memory"]);
    run(async {
        let c = std::rc::Rc::new(Client::new(m.port));
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let c = c.clone();
                monoio::spawn(async move { add(&c, VALUE_CART, "hana", "tea", 1, "slow").await })
            })
            .collect();
        let mut results = Vec::new();
        for call in calls {
            results.push(call.await);
        }
        let exhausted = results.iter().filter(|r| matches!(r, Err(s) if s.code == Code::ResourceExhausted)).count();
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert!(exhausted > 0 && ok > 0, "{results:?}");
        assert_eq!(ok + exhausted, 8, "{results:?}");
        assert_eq!(cart(&c, VALUE_CART, "hana").await.unwrap(), [format!("tea x{ok}")], "only accepted commands ran");
    });
}

/// Sends commands until SIGKILL; every acknowledged one must be in the
/// journal after restart.
#[test]
fn acknowledged_events_survive_sigkill() {
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &["--snapshot-every", "3"]);
    let data = TempDir::new("sigkill");
    let m = start_massa(fn_port, &["--data-dir", data.path(), "--durability", "sync"]);
    let carts = 8;
    let acked = run(async {
        let c = std::rc::Rc::new(Client::new(m.port));
        let acked = std::rc::Rc::new(std::cell::RefCell::new(vec![0i32; carts]));
        let mut tasks = Vec::new();
        for i in 0..carts {
            let (c, acked) = (c.clone(), acked.clone());
            tasks.push(monoio::spawn(async move {
                for _ in 0..400 {
                    match add(&c, CART, &format!("kill-{i}"), "apple", 1, "Apple").await {
                        Ok(()) => acked.borrow_mut()[i] += 1,
                        Err(_) => break,
                    }
                }
            }));
        }
        monoio::time::sleep(Duration::from_millis(300)).await;
        m.proc.signal(libc::SIGKILL);
        for t in tasks {
            t.await;
        }
        let acked = acked.borrow().clone();
        acked
    });
    assert!(acked.iter().sum::<i32>() > 0, "some commands were acknowledged before the kill");
    drop(m);
    let m = start_massa(fn_port, &["--data-dir", data.path()]);
    run(async {
        let c = Client::new(m.port);
        for (i, &n) in acked.iter().enumerate() {
            let items = cart(&c, CART, &format!("kill-{i}")).await.unwrap();
            let have: i32 = items.first().map_or(0, |s| s.trim_start_matches("apple x").parse().unwrap());
            assert!(have >= n, "cart {i}: {have} in the journal, {n} acknowledged");
            assert!(have <= n + 1, "cart {i}: at most the one in-flight command beyond the acknowledged ones");
        }
    });
}

#[test]
fn the_per_core_cap_passivates_the_least_recently_used_entity() {
    let fn_port = free_port();
    let f = start_example_fn(fn_port, &[]);
    let m = start_massa(fn_port, &["--workers", "1", "--max-active-entities-per-core", "2", "--store", "memory"]);
    run(async {
        let c = Client::new(m.port);
        for user in ["lru-a", "lru-b", "lru-a", "lru-c"] {
            add(&c, CART, user, "apple", 1, "Apple").await.unwrap();
        }
        logged(&f, "cart lru-b stream closed by the proxy").await;
        assert!(!f.log().contains("cart lru-a stream closed"), "the recently used one stays:\n{}", f.log());
        assert_eq!(cart(&c, CART, "lru-b").await.unwrap(), ["apple x1"]);
    });
}

/// A real full disk: RocksDB on a 24 MiB tmpfs, filled up under it. Needs
/// root (CI runs as root) to mount the tmpfs; without it the test fails.
#[test]
fn a_full_disk_fails_the_command_and_claims_no_success() {
    let dir = TempDir::new("fulldisk");
    let mount = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs", dir.path()])
        .output();
    match mount {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "mounting a tmpfs on {} failed ({}: {}): this test needs root (or CAP_SYS_ADMIN); run it as root",
            dir.path(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("cannot run mount ({e}): this test needs mount(8) (util-linux) and root to mount a tmpfs"),
    }
    struct Unmount<'a>(&'a str);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg("-l").arg(self.0).status();
        }
    }
    let _unmount = Unmount(dir.path());
    let fn_port = free_port();
    let f = start_example_fn(fn_port, &[]);
    let m = start_massa(fn_port, &["--data-dir", dir.path(), "--durability", "sync", "--min-free-disk", "4MiB"]);
    run(async {
        let c = Client::new(m.port);
        if let Err(e) = add(&c, CART, "ivy", "apple", 1, "Apple").await {
            panic!("{e}\nfunction:\n{}\nmassa:\n{}", f.log(), m.proc.log());
        }
        // Fill what is left of the file system.
        let filler = std::path::Path::new(dir.path()).join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 << 10];
        while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
        let big = "x".repeat(256 << 10);
        let err = add(&c, CART, "ivy", "pear", 1, &big).await.unwrap_err();
        assert_eq!(err.code, Code::Unavailable, "{err}\nfunction:\n{}\nmassa:\n{}", f.log(), m.proc.log());
        assert!(err.message.contains("is full"), "{err}\nfunction:\n{}\nmassa:\n{}", f.log(), m.proc.log());
        // The proxy keeps serving; reads work, and the acknowledged event is there.
        assert_eq!(cart(&c, CART, "ivy").await.unwrap(), ["apple x1"]);
        // Space comes back: writes work again.
        drop(file);
        std::fs::remove_file(&filler).unwrap();
        add(&c, CART, "ivy", "pear", 1, "Pear").await.unwrap();
        assert_eq!(cart(&c, CART, "ivy").await.unwrap(), ["apple x1", "pear x1"]);
    });
    assert!(m.proc.log().contains("storage write failed"), "{}", m.proc.log());
}
