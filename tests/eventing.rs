//! Event-log eventing end to end: the example function with `--eventing`
//! (proto/example/eventing/ledger.proto) behind the real proxy. Ledgers
//! persist entries; the consumers log every delivery to stderr, which is
//! what these tests read.

mod support;

use std::time::{Duration, Instant};

use massa::grpc::encode_prost;
use massa::proto::example::eventing::Append;
use support::*;

const AUDIT_A: &str = "example.eventing.Auditor/AuditA";
const AUDIT_B: &str = "example.eventing.Auditor/AuditB";
const MIRROR: &str = "example.eventing.Mirror/MirrorA";
const ENTRY: &str = "type.googleapis.com/example.eventing.Entry";

/// One delivery as the consumer logged it.
#[derive(Debug, Clone, PartialEq)]
struct Delivery {
    consumer: String,
    offset: u64,
    source: String,
    subject: String,
    type_url: String,
    /// `ce-time`, the append time.
    time: String,
    text: String,
}

/// Every delivery the function logged, in arrival order (a consumer keeps
/// several in flight, so events of different entities may arrive in
/// either order).
fn deliveries(log: &str) -> Vec<Delivery> {
    log.lines()
        .filter_map(|line| line.strip_prefix("consumed "))
        .map(|rest| {
            let (consumer, fields) = rest.split_once(' ').unwrap();
            let field = |key: &str| {
                let start = fields.find(&format!("{key}=")).unwrap_or_else(|| panic!("{key} in {rest}")) + key.len() + 1;
                let value = &fields[start..];
                // `text` is last and may hold spaces.
                if key == "text" { value } else { value.split(' ').next().unwrap() }.to_owned()
            };
            Delivery {
                consumer: consumer.to_owned(),
                offset: field("ce-id").parse().unwrap(),
                source: field("ce-source"),
                subject: field("ce-subject"),
                type_url: field("ce-type"),
                time: field("ce-time"),
                text: field("text"),
            }
        })
        .collect()
}

/// The texts `consumer` received in offset (`ce-id`) order, each delivery
/// of an event once (redeliveries next to each other).
fn texts(log: &str, consumer: &str) -> Vec<String> {
    let mut seen: Vec<_> = deliveries(log).into_iter().filter(|d| d.consumer == consumer).collect();
    seen.sort_by_key(|d| d.offset);
    seen.into_iter().map(|d| d.text).collect()
}

/// Waits until `ready` holds over the function logs `logs()` returns.
fn must_see(what: &str, logs: impl Fn() -> String, ready: impl Fn(&str) -> bool) {
    let start = Instant::now();
    while !ready(&logs()) {
        assert!(start.elapsed() < PATIENCE, "never saw {what}; deliveries: {:#?}", deliveries(&logs()));
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn try_append(massa: &Massa, ledger: &str, id: &str, text: &str) -> Result<(), massa::grpc::Status> {
    run(async {
        let c = Client::new(massa.port);
        let request = Append { ledger_id: id.into(), text: text.into() };
        c.call(&format!("/example.eventing.Ledger{ledger}/Append"), None, vec![encode_prost(&request)]).await.2
    })
}

fn append(massa: &Massa, ledger: &str, id: &str, text: &str) {
    try_append(massa, ledger, id, text).unwrap_or_else(|s| panic!("append {text}: {s:?}; log:\n{}", massa.proc.log()));
}

fn metric(massa: &Massa, name: &str, group: &str, log: &str) -> u64 {
    support::metric(massa.admin, &format!("{name}{{group=\"{group}\",event_log=\"{log}\"}}"))
}

/// Waits until the metric reads `expected` (the function logs a delivery
/// before the proxy has counted it).
fn must_metric(massa: &Massa, name: &str, group: &str, log: &str, expected: u64) {
    let start = Instant::now();
    while metric(massa, name, group, log) != expected {
        assert!(start.elapsed() < PATIENCE, "{name} of {group}/{log} never reached {expected}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `ce-time` is RFC 3339 UTC (as CloudEvents require) and falls between
/// the first append's start and the last one's end, to the second.
fn assert_plausible_time(time: &str, started: std::time::SystemTime, finished: std::time::SystemTime) {
    let b = time.as_bytes();
    let shape = time.len() >= 20
        && time.ends_with('Z')
        && [4, 7].iter().all(|&i| b[i] == b'-')
        && b[10] == b'T'
        && [13, 16].iter().all(|&i| b[i] == b':')
        && b[19] == b'.';
    assert!(shape, "ce-time {time:?} is not RFC 3339 UTC with fractional seconds");
    let secs = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let num = |r: std::ops::Range<usize>| time[r].parse::<u64>().unwrap_or_else(|e| panic!("{time:?}: {e}"));
    let (y, mo, d) = (num(0..4), num(5..7), num(8..10));
    // Days since the epoch of a Gregorian date (months counted from March).
    let (y, mo) = if mo <= 2 { (y - 1, mo + 9) } else { (y, mo - 3) };
    let days = 365 * y + y / 4 - y / 100 + y / 400 + (153 * mo + 2) / 5 + d - 1 - 719_468;
    let at = days * 86_400 + num(11..13) * 3600 + num(14..16) * 60 + num(17..19);
    assert!((secs(started)..=secs(finished)).contains(&at), "ce-time {time} is not when the event was appended");
}

fn eventing_fn(port: u16, extra: &[&str]) -> Proc {
    start_example_fn(port, &[&["--eventing"], extra].concat())
}

#[test]
fn two_event_logs_and_two_consumer_groups_each_see_every_event_in_order() {
    let fn_port = free_port();
    let f = eventing_fn(fn_port, &[]);
    let m = start_massa(fn_port, &["--store", "memory"]);
    let started = std::time::SystemTime::now();
    append(&m, "A", "l1", "a1");
    append(&m, "B", "l2", "b1");
    append(&m, "A", "l3", "a2");
    let finished = std::time::SystemTime::now();
    let logs = || f.log();
    must_see("both groups at a2 and ledger-b at b1", logs, |log| {
        texts(log, AUDIT_A).len() == 2 && texts(log, MIRROR).len() == 2 && texts(log, AUDIT_B).len() == 1
    });
    let log = f.log();
    assert_eq!(texts(&log, AUDIT_A), ["a1", "a2"]);
    assert_eq!(texts(&log, MIRROR), ["a1", "a2"], "a second group reads the same log on its own");
    assert_eq!(texts(&log, AUDIT_B), ["b1"], "ledger-b's events go to the Any method");
    let all = deliveries(&log);
    let mut a: Vec<_> = all.iter().filter(|d| d.consumer == AUDIT_A).collect();
    a.sort_by_key(|d| d.offset);
    assert!(a[0].offset < a[1].offset, "one offset per event: {a:?}");
    assert_eq!((a[0].source.as_str(), a[0].subject.as_str(), a[0].type_url.as_str()), ("ledger-a", "l1", ENTRY));
    let b = all.iter().find(|d| d.consumer == AUDIT_B).unwrap();
    assert_eq!((b.source.as_str(), b.subject.as_str(), b.type_url.as_str()), ("ledger-b", "l2", ENTRY));
    for d in &all {
        assert_plausible_time(&d.time, started, finished);
    }
    must_metric(&m, "massa_eventing_delivered_total", "mirror", "ledger-a", 2);
    must_metric(&m, "massa_eventing_delivered_total", "example.eventing.Auditor", "ledger-b", 1);
    must_metric(&m, "massa_eventing_lag_events", "mirror", "ledger-a", 0);
}

#[test]
fn one_entitys_events_arrive_one_at_a_time_in_offset_order() {
    let fn_port = free_port();
    let f = eventing_fn(fn_port, &[]);
    let m = start_massa(fn_port, &["--store", "memory"]);
    // The function logs a delivery when it answers it, and takes 300 ms
    // over `slow:` entries: e1's second event must wait for its first,
    // e2's need not.
    append(&m, "A", "e1", "slow:first");
    append(&m, "A", "e1", "second");
    append(&m, "A", "e2", "other");
    let logs = || f.log();
    must_see("all three events", logs, |log| texts(log, AUDIT_A).len() == 3);
    let answered: Vec<String> = deliveries(&f.log()).into_iter().filter(|d| d.consumer == AUDIT_A).map(|d| d.text).collect();
    let at = |t: &str| answered.iter().position(|a| a == t).unwrap();
    assert!(at("slow:first") < at("second"), "e1's events overlapped: {answered:?}");
    assert!(at("other") < at("slow:first"), "e2 waited for e1: {answered:?}");
}

#[test]
fn a_failed_event_is_redelivered_and_a_stuck_consumer_blocks_no_other() {
    let fn_port = free_port();
    let f = eventing_fn(fn_port, &[]);
    let m = start_massa(fn_port, &["--store", "memory"]);
    append(&m, "A", "l1", "fail-once:x");
    append(&m, "A", "l1", "after");
    let logs = || f.log();
    // "after" may arrive before the retry: both groups keep several events
    // in flight.
    let redelivered = ["fail-once:x", "fail-once:x", "after"];
    must_see("the failed event redelivered, not skipped, in both groups", logs, |log| {
        texts(log, AUDIT_A) == redelivered && texts(log, MIRROR) == redelivered
    });
    must_metric(&m, "massa_eventing_redeliveries_total", "mirror", "ledger-a", 1);

    // The Auditor refuses this event for good; Mirror and the Auditor's
    // ledger-b consumer go on.
    append(&m, "A", "l1", "fail-audit!");
    append(&m, "A", "l1", "later");
    append(&m, "B", "l2", "b1");
    must_see("the Auditor retrying while the others go on", logs, |log| {
        texts(log, AUDIT_A).iter().filter(|t| *t == "fail-audit!").count() >= 3
            && texts(log, MIRROR).last().map(String::as_str) == Some("later")
            && texts(log, AUDIT_B) == ["b1"]
    });
    // Events after it may be delivered meanwhile (several are in flight),
    // but the stored offset never passes it: it still counts as lag.
    assert!(metric(&m, "massa_eventing_lag_events", "example.eventing.Auditor", "ledger-a") >= 1);
}

#[test]
fn a_restarted_proxy_resumes_after_the_stored_offset() {
    let fn_port = free_port();
    let f = eventing_fn(fn_port, &[]);
    let data = TempDir::new("eventing");
    let flags = ["--data-dir", data.path()];
    let mut first = start_massa(fn_port, &flags);
    append(&first, "A", "l1", "a1");
    append(&first, "A", "l2", "a2");
    let logs = || f.log();
    must_see("a2 in both groups", logs, |log| texts(log, AUDIT_A).len() == 2 && texts(log, MIRROR).len() == 2);
    first.proc.signal(libc::SIGTERM);
    assert_eq!(first.proc.must_exit(), 0, "{}", first.proc.log());

    let second = start_massa(fn_port, &flags);
    append(&second, "A", "l1", "a3");
    must_see("a3 in both groups", logs, |log| texts(log, AUDIT_A).len() >= 3 && texts(log, MIRROR).len() >= 3);
    let log = f.log();
    // A clean stop stored the last offsets, so nothing is delivered twice.
    assert_eq!(texts(&log, AUDIT_A), ["a1", "a2", "a3"]);
    assert_eq!(texts(&log, MIRROR), ["a1", "a2", "a3"]);
}

#[test]
fn consumers_resume_after_the_user_function_crashes() {
    let fn_port = free_port();
    let mut crashing = eventing_fn(fn_port, &["--crash-on-event"]);
    let m = start_massa(fn_port, &["--store", "memory"]);
    append(&m, "A", "l1", "a1");
    append(&m, "A", "l1", "crash!");
    assert_eq!(crashing.must_exit(), 3, "the function crashed on the consumed event");
    let before = crashing.log();
    let restarted = eventing_fn(fn_port, &[]);
    // The first calls after the crash may still meet the dead connection
    // and fail UNAVAILABLE, which a client retries.
    let retried = (0..10).find(|_| {
        let ok = try_append(&m, "A", "l1", "a3").is_ok();
        if !ok {
            std::thread::sleep(Duration::from_millis(100));
        }
        ok
    });
    assert!(retried.is_some(), "append after the restart never succeeded; log:\n{}", m.proc.log());
    let logs = || format!("{before}{}", restarted.log());
    // An event in flight when the function died is redelivered, maybe
    // after a3 (several are in flight): wait for every one.
    let distinct = |log: &str, consumer| {
        let mut seen = texts(log, consumer);
        seen.dedup();
        seen
    };
    must_see("a1, crash! and a3 in both groups, nothing lost", logs, |log| {
        [AUDIT_A, MIRROR].iter().all(|c| distinct(log, c) == ["a1", "crash!", "a3"])
    });
    let log = logs();
    let crash_deliveries = deliveries(&log).iter().filter(|d| d.text == "crash!").count();
    assert!(crash_deliveries >= 2, "the event that crashed the function was redelivered: {:#?}", deliveries(&log));
}

/// An event whose type a server-streaming method takes is delivered with
/// `handleStreamedOut`, and every streamed response is processed.
#[test]
fn a_server_streaming_consumer_gets_its_events_on_handle_streamed_out() {
    use massa::proto::cloudstate::action::ActionCommand;
    use massa::proto::cloudstate::tck::model::eventlogeventing::{
        emit_event_request, process_step::Step, EmitEventRequest, EventTwo, Forward, ProcessStep, Reply,
    };
    use prost::Message;
    use support::interceptor::{Event, Interceptor};

    let fn_port = free_port();
    let _f = start_tck_model_with(fn_port, &["--only", "eventing"]);
    let interceptor = Interceptor::start(fn_port);
    let m = start_massa(interceptor.port, &["--store", "memory"]);
    let steps = vec![
        ProcessStep { step: Some(Step::Reply(Reply { message: "r".into() })) },
        ProcessStep { step: Some(Step::Forward(Forward { message: "f".into() })) },
    ];
    let event = EventTwo { step: steps };
    let request = EmitEventRequest { id: "two:1".into(), event: Some(emit_event_request::Event::EventTwo(event.clone())) };
    run(async {
        let c = Client::new(m.port);
        let path = "/cloudstate.tck.model.eventlogeventing.EventSourcedEntityOne/EmitEvent";
        c.call(path, None, vec![encode_prost(&request)]).await.2.unwrap();
    });
    let (streamed, effect) = interceptor
        .recorder
        .wait(PATIENCE, |calls| {
            let streamed = calls.iter().find(|c| c.path.ends_with("/handleStreamedOut") && c.output.last() == Some(&Event::Complete))?;
            let effect = calls.iter().find(|c| c.path.ends_with("/handleUnary") && c.output.last() == Some(&Event::Complete))?;
            Some((streamed.clone(), effect.clone()))
        })
        .expect("a streamed-out delivery and the forward of its second response");
    let Event::Message(first) = &streamed.input[0] else { panic!("{streamed:?}") };
    let command = ActionCommand::decode(first.clone()).unwrap();
    assert_eq!(command.name, "ProcessEventTwo");
    assert_eq!(EventTwo::decode(command.payload.unwrap().value).unwrap(), event);
    assert_eq!(streamed.output.len(), 3, "two responses, then the end: {streamed:?}");
    let Event::Message(forwarded) = &effect.input[0] else { panic!("{effect:?}") };
    assert_eq!(ActionCommand::decode(forwarded.clone()).unwrap().name, "Effect", "the forward in the stream was followed");
}

#[test]
fn with_two_proxies_on_one_database_each_consumer_runs_on_one_and_moves_when_it_dies() {
    let pg = support::postgres::Postgres::start();
    let (fn_a, fn_b) = (free_port(), free_port());
    let (fa, fb) = (eventing_fn(fn_a, &[]), eventing_fn(fn_b, &[]));
    let replica = |port, name| {
        start_massa(port, &["--store", "postgres", "--postgres-url", &pg.url(), "--advertise-address", name, "--lease-duration", "2s"])
    };
    let mut a = replica(fn_a, "proxy-a:9000");
    // A runs all three consumers before B starts (bounded wait).
    let runs_here = |m: &Massa| m.proc.log().matches("event-log consumer runs on this proxy").count();
    let start = Instant::now();
    while runs_here(&a) < 3 {
        assert!(start.elapsed() < PATIENCE, "A never took its consumers; log:\n{}", a.proc.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let b = replica(fn_b, "proxy-b:9000");
    // Appends through both proxies in turn, as clients behind a Service
    // would send them: each ledger is written by whichever proxy holds its
    // shard (the other refuses it, naming the owner, and the client tries
    // the other one).
    let before: Vec<String> = (1..=8).map(|i| format!("e{i}")).collect();
    for (i, text) in before.iter().enumerate() {
        let id = format!("l{}", i % 4 + 1);
        let (first, second) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        if let Err(refused) = try_append(first, "A", &id, text) {
            try_append(second, "A", &id, text).unwrap_or_else(|s| panic!("append {text}: refused {refused:?}, then {s:?}"));
        }
    }
    must_see("all 8 events in both groups at A's function", || fa.log(), |log| {
        texts(log, AUDIT_A).len() >= 8 && texts(log, MIRROR).len() >= 8
    });
    let mut seen_a = texts(&fa.log(), AUDIT_A);
    seen_a.dedup();
    assert_eq!(seen_a, before, "every event of ledger-a, in offset order, whoever appended it");
    assert!(deliveries(&fb.log()).is_empty(), "B runs no consumer while A holds them: {:#?}", deliveries(&fb.log()));
    assert_eq!(runs_here(&b), 0, "{}", b.proc.log());

    // A dies: B takes the consumers over once A's leases expire, and
    // resumes after the last offset A stored.
    a.proc.signal(libc::SIGKILL);
    a.proc.must_exit();
    let after = ["f1", "f2", "f3"];
    for (i, text) in after.iter().enumerate() {
        let id = format!("l{}", i + 1);
        run(async {
            let c = Client::new(b.port);
            let request = Append { ledger_id: id.clone(), text: text.to_string() };
            eventually(&format!("B appending {text}"), || async {
                c.call("/example.eventing.LedgerA/Append", None, vec![encode_prost(&request)]).await.2.ok()
            })
            .await
        });
    }
    must_see("f1..f3 in both groups at B's function", || fb.log(), |log| {
        after.iter().all(|t| texts(log, AUDIT_A).contains(&t.to_string()) && texts(log, MIRROR).contains(&t.to_string()))
    });
    assert!(runs_here(&b) >= 2, "{}", b.proc.log());
    // At least once across proxies: B may repeat what A processed after
    // its last stored offset, but nothing is missing and order holds.
    let mut delivered: Vec<String> = texts(&fa.log(), AUDIT_A).into_iter().chain(texts(&fb.log(), AUDIT_A)).collect();
    let mut appended: Vec<String> = before.iter().cloned().chain(after.iter().map(|t| t.to_string())).collect();
    delivered.sort();
    delivered.dedup();
    appended.sort();
    assert_eq!(delivered, appended, "every event delivered, none invented");
    let from_b = texts(&fb.log(), AUDIT_A);
    let first_new = from_b.iter().position(|t| t == "f1").expect("f1 at B");
    assert_eq!(&from_b[first_new..], after, "B delivers the new events in order, after any redelivered ones: {from_b:?}");
}
