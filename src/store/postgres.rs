//! The PostgreSQL [`Store`] (`--store postgres --postgres-url URL`): the
//! key layout of [`super::keys`] in one table, `massa_kv (key bytea PRIMARY
//! KEY, value bytea)`. `bytea` sorts bytewise, so a prefix scan is an index
//! range scan, and every key — an event's is `(persistence id, entity id,
//! sequence)` — is the primary key of its row: [`Op::Insert`] is a plain
//! INSERT, so a second writer of the same event fails its whole batch
//! instead of forking the journal.
//!
//! Blocking like every [`Store`]: it runs on the storage threads, each call
//! on a pooled connection that the `postgres` crate drives with a
//! current-thread tokio runtime of its own, on the calling thread. No
//! executor ever waits on the server. One batch is one transaction, durable
//! when COMMIT returns (`synchronous_commit` off for `--durability async`).
//!
//! The same database holds the shard leases of [`super::lease`]
//! (`massa_leases`, `massa_settings`): a fenced batch checks, right after
//! BEGIN, that its leases still have the epochs it was issued under, and
//! holds those rows `FOR SHARE` until COMMIT, so a takeover (which bumps
//! the epoch) waits for the batches in flight and every later batch of the
//! old owner fails.
//!
//! When the server goes away, calls fail with an error naming PostgreSQL
//! and its address, and later calls reconnect. Failed connects back off
//! (doubling up to [`MAX_BACKOFF`]) and calls in between fail at once, so a
//! down server does not cost every command a connect timeout.

use std::{
    error::Error as _,
    fmt::Write as _,
    io,
    sync::Mutex,
    time::{Duration, Instant},
};

use postgres::{config::Host, error::SqlState, Client, NoTls, Statement, Transaction};
use tracing::{info, warn};

use super::{already_written, outcome_unknown, Fence, Numbering, Op, Store};

/// Schema migrations in order: version `n` is `MIGRATIONS[n - 1]`. Applied
/// at start in one transaction under an advisory lock, each recorded in
/// `massa_schema`, so concurrent starts agree and a newer schema is refused.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE massa_kv (key bytea PRIMARY KEY, value bytea NOT NULL)",
    "CREATE TABLE massa_leases (shard integer PRIMARY KEY, owner text NOT NULL, epoch bigint NOT NULL, expires_at timestamptz NOT NULL); \
     CREATE TABLE massa_settings (name text PRIMARY KEY, value text NOT NULL)",
    // The tag log's counter: one row, continuing after every offset
    // written before it existed (the last 8 bytes of each `T` key).
    "CREATE TABLE massa_tag_offset (single boolean PRIMARY KEY DEFAULT true CHECK (single), last bigint NOT NULL); \
     INSERT INTO massa_tag_offset (last) \
     SELECT coalesce(max(('x' || encode(substring(key FROM length(key) - 7), 'hex'))::bit(64)::bigint), 0) \
     FROM massa_kv WHERE key >= '\\x54'::bytea AND key < '\\x55'::bytea",
];

/// Times a batch is run again after PostgreSQL broke a deadlock by
/// aborting it (it wrote nothing). Locks are taken in one order — lease
/// rows by shard, then the tag-log counter — so this is a safety net.
const DEADLOCK_RETRIES: u32 = 3;

/// The advisory lock that serialises schema migrations ("massa" in ASCII).
const MIGRATION_LOCK: i64 = 0x6d_61_73_73_61;

/// Used when the URL sets no `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Used when the URL sets no `tcp_user_timeout`: a server that stops
/// acknowledging (a partition) fails the connection this soon, instead of
/// holding a storage or lease thread for the kernel's minutes of retries.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(3);
/// Used when the URL sets no `keepalives_idle`: a call waiting for an
/// answer sends nothing, so only keepalive probes (failed after
/// `tcp_user_timeout`) notice a server that went away meanwhile.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(2);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub struct PostgresStore {
    config: postgres::Config,
    /// Where the server is, for errors and logs (no credentials).
    target: String,
    idle: Mutex<Vec<Conn>>,
    backoff: Mutex<Backoff>,
    /// Batches refused because a lease they were issued under had moved.
    fencing_rejections: std::sync::atomic::AtomicU64,
}

/// A connection with its prepared statements.
struct Conn {
    client: Client,
    sql: Statements,
}

struct Statements {
    get: Statement,
    /// Keys in `[$1, $2)`, at most `$3`.
    scan_to: Statement,
    /// Keys from `$1` on, at most `$2` (a prefix with no upper bound).
    scan_from: Statement,
    insert: Statement,
    upsert: Statement,
    delete: Statement,
    /// The lease rows of shards `$1`, locked until COMMIT in shard order.
    fence: Statement,
    /// Takes `$1` tag-log offsets; returns the last one.
    take_offsets: Statement,
}

/// The state of reconnecting after a failed connect.
#[derive(Default)]
struct Backoff {
    delay: Duration,
    /// No connect is tried before this.
    until: Option<Instant>,
    last_error: String,
}

/// A failed call, and what is known of its effect.
struct Failure {
    error: postgres::Error,
    effect: Effect,
}

#[derive(PartialEq)]
enum Effect {
    /// Changed nothing: may run again on a fresh connection.
    None,
    /// Changed nothing, and running it again would fail the same way.
    Final,
    /// COMMIT was sent and no answer came back: it may have committed.
    Unknown,
}

impl Failure {
    fn retry_safe(error: postgres::Error) -> Failure {
        Failure { error, effect: Effect::None }
    }

    fn final_(error: postgres::Error) -> Failure {
        Failure { error, effect: Effect::Final }
    }

    /// A failed COMMIT: the server's refusal (an SQL state) rolled it back;
    /// a lost connection leaves it open.
    fn commit(error: postgres::Error) -> Failure {
        let effect = if error.code().is_some() { Effect::Final } else { Effect::Unknown };
        Failure { error, effect }
    }
}

impl PostgresStore {
    /// Connects to `url` (a `postgresql://` URL or `key=value` pairs),
    /// creates or migrates the schema, and keeps that connection.
    pub fn open(url: &str) -> io::Result<PostgresStore> {
        let mut config: postgres::Config =
            url.parse().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("--postgres-url: {}", describe_error(&e))))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        // The crate reports its defaults for unset keepalive options, so
        // whether the URL set them is read from the URL itself.
        if !url.contains("keepalives_idle") {
            config.keepalives_idle(KEEPALIVE_IDLE);
        }
        if !url.contains("keepalives_interval") {
            config.keepalives_interval(KEEPALIVE_INTERVAL);
        }
        if config.get_application_name().is_none() {
            config.application_name("massa");
        }
        let target = describe(&config);
        let store = PostgresStore { config, target, idle: Mutex::default(), backoff: Mutex::default(), fencing_rejections: Default::default() };
        let mut client = store.config.connect(NoTls).map_err(|e| store.error("connecting", &e))?;
        store.migrate(&mut client)?;
        let conn = Conn::prepare(client).map_err(|e| store.error("preparing statements", &e))?;
        store.idle().push(conn);
        info!(server = %store.target, schema = MIGRATIONS.len(), "PostgreSQL store open");
        Ok(store)
    }

    fn migrate(&self, client: &mut Client) -> io::Result<()> {
        let run = |client: &mut Client| -> Result<Result<(), String>, postgres::Error> {
            let mut tx = client.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS massa_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
            )?;
            let current: i32 = tx.query_one("SELECT coalesce(max(version), 0) FROM massa_schema", &[])?.get(0);
            let known = MIGRATIONS.len();
            let current = usize::try_from(current).unwrap_or(0);
            if current > known {
                return Ok(Err(format!(
                    "the database has Massa schema version {current}; this build knows versions up to {known}. \
                     Run the Massa release that wrote it, or point --postgres-url at another database"
                )));
            }
            for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
                let version = i32::try_from(i + 1).expect("few migrations");
                tx.batch_execute(sql)?;
                tx.execute("INSERT INTO massa_schema (version) VALUES ($1)", &[&version])?;
                info!(version, "PostgreSQL schema migrated");
            }
            tx.commit()?;
            Ok(Ok(()))
        };
        match run(client) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(refusal)) => Err(io::Error::new(io::ErrorKind::InvalidData, format!("PostgreSQL at {}: {refusal}", self.target))),
            Err(e) => Err(self.error("creating the schema", &e)),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Conn>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new connection, unless a recent connect failed and its backoff has
    /// not run out.
    fn connect(&self) -> io::Result<Conn> {
        let mut backoff = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(until) = backoff.until.filter(|&u| Instant::now() < u) {
            return Err(io::Error::other(format!(
                "PostgreSQL at {} is unreachable ({}); next connection attempt in {} ms",
                self.target,
                backoff.last_error,
                until.saturating_duration_since(Instant::now()).as_millis()
            )));
        }
        // Connects one at a time: threads arriving meanwhile wait for this
        // attempt's outcome instead of piling onto a down server.
        match self.config.connect(NoTls).and_then(Conn::prepare) {
            Ok(conn) => {
                if backoff.until.take().is_some() {
                    info!(server = %self.target, "reconnected to PostgreSQL");
                }
                backoff.delay = Duration::ZERO;
                Ok(conn)
            }
            Err(e) => {
                backoff.delay = (backoff.delay * 2).clamp(MIN_BACKOFF, MAX_BACKOFF);
                backoff.until = Some(Instant::now() + backoff.delay);
                backoff.last_error = describe_error(&e);
                warn!(server = %self.target, error = %backoff.last_error, retry_in_ms = backoff.delay.as_millis() as u64, "cannot connect to PostgreSQL");
                Err(self.error("connecting", &e))
            }
        }
    }

    /// Runs `call` on an idle connection, or a new one. A pooled connection
    /// found closed (the server restarted since it was used) means the
    /// others are too: they are dropped and `call` runs once more on a new
    /// connection if it changed nothing.
    fn run<T>(&self, what: &str, mut call: impl FnMut(&mut Conn) -> Result<T, Failure>) -> io::Result<T> {
        let pooled = self.idle().pop();
        let fresh = pooled.is_none();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => self.connect()?,
        };
        let mut result = call(&mut conn);
        if !fresh && conn.client.is_closed() {
            self.idle().clear();
            if matches!(&result, Err(f) if f.effect == Effect::None) {
                conn = self.connect()?;
                result = call(&mut conn);
            }
        }
        if !conn.client.is_closed() {
            self.idle().push(conn);
        }
        result.map_err(|f| match f.effect {
            Effect::Unknown => outcome_unknown(format!(
                "PostgreSQL at {}: the connection failed after COMMIT was sent ({}); the batch may have been written",
                self.target,
                describe_error(&f.error)
            )),
            _ => self.error(what, &f.error),
        })
    }

    fn error(&self, what: &str, e: &postgres::Error) -> io::Error {
        if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
            return already_written("PostgreSQL", &format!("at {}", self.target));
        }
        io::Error::other(format!("PostgreSQL at {}: {what} failed: {}", self.target, describe_error(e)))
    }
}

impl Conn {
    fn prepare(mut client: Client) -> Result<Conn, postgres::Error> {
        let mut prepare = |sql: &str| client.prepare(sql);
        let sql = Statements {
            get: prepare("SELECT value FROM massa_kv WHERE key = $1")?,
            scan_to: prepare("SELECT key, value FROM massa_kv WHERE key >= $1 AND key < $2 ORDER BY key LIMIT $3")?,
            scan_from: prepare("SELECT key, value FROM massa_kv WHERE key >= $1 ORDER BY key LIMIT $2")?,
            insert: prepare("INSERT INTO massa_kv (key, value) SELECT * FROM unnest($1::bytea[], $2::bytea[])")?,
            upsert: prepare(
                "INSERT INTO massa_kv (key, value) SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?,
            delete: prepare("DELETE FROM massa_kv WHERE key = ANY($1::bytea[])")?,
            // Rows are locked in ORDER BY order (the sort runs first), the
            // same order lease renewals lock them in.
            fence: prepare("SELECT shard, epoch, owner FROM massa_leases WHERE shard = ANY($1::int[]) ORDER BY shard FOR SHARE")?,
            take_offsets: prepare("UPDATE massa_tag_offset SET last = last + $1 RETURNING last")?,
        };
        Ok(Conn { client, sql })
    }
}

impl Store for PostgresStore {
    fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        self.run("reading", |c| {
            let row = c.client.query_opt(&c.sql.get, &[&key]).map_err(Failure::retry_safe)?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn scan(&self, prefix: &[u8], start: &[u8], limit: usize) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let from = start.max(prefix);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let upper = successor(prefix);
        self.run("scanning", |c| {
            let rows = match &upper {
                Some(to) => c.client.query(&c.sql.scan_to, &[&from, to, &limit]),
                None => c.client.query(&c.sql.scan_from, &[&from, &limit]),
            };
            Ok(rows.map_err(Failure::retry_safe)?.into_iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn commit(&self, ops: Vec<Op>, fence: &[Fence], sync: bool) -> io::Result<()> {
        let mut shards: Vec<i32> = fence.iter().map(|f| f.shard as i32).collect();
        shards.sort_unstable();
        let tags = ops.iter().filter(|op| matches!(op, Op::Tag(..))).count();
        let outcome = self.run("committing a batch", |c| {
            let mut attempt = 0;
            loop {
                match self.commit_once(c, &ops, tags, fence, &shards, sync) {
                    Err(f) if f.error.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED) && attempt < DEADLOCK_RETRIES => {
                        attempt += 1;
                        warn!(server = %self.target, attempt, "PostgreSQL aborted a batch to break a deadlock; running it again");
                    }
                    result => return result,
                }
            }
        })?;
        outcome.map_err(|lost| io::Error::other(format!("PostgreSQL at {}: lease lost: {lost}; nothing of the batch was written", self.target)))
    }

    fn numbering(&self) -> Numbering {
        Numbering::Store
    }
}

impl PostgresStore {
    /// One transaction of [`Store::commit`]: the fence, then the tag-log
    /// counter (held until COMMIT, so offsets become visible in order and
    /// no reader sees a gap that fills later), then the writes.
    /// `Ok(Err(why))`: a lease moved on and nothing was written.
    fn commit_once(
        &self,
        c: &mut Conn,
        ops: &[Op],
        tags: usize,
        fence: &[Fence],
        shards: &[i32],
        sync: bool,
    ) -> Result<Result<(), String>, Failure> {
        let mut tx = c.client.transaction().map_err(Failure::retry_safe)?;
        if !sync {
            tx.batch_execute("SET LOCAL synchronous_commit TO off").map_err(Failure::retry_safe)?;
        }
        if !fence.is_empty() {
            let rows = tx.query(&c.sql.fence, &[&shards]).map_err(Failure::retry_safe)?;
            let held: Vec<(i32, i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
            if let Some(lost) = fence_broken(fence, &held) {
                self.fencing_rejections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // Dropping `tx` rolls the batch back.
                return Ok(Err(lost));
            }
        }
        let mut tag_keys = Vec::with_capacity(tags);
        if tags > 0 {
            let count = i64::try_from(tags).expect("a batch's events fit in memory");
            let last: i64 = tx.query_one(&c.sql.take_offsets, &[&count]).map_err(Failure::retry_safe)?.get(0);
            let first = (last - count + 1) as u64;
            let prefixes = ops.iter().filter_map(|op| if let Op::Tag(prefix, _) = op { Some(prefix) } else { None });
            for (prefix, offset) in prefixes.zip(first..) {
                let mut key = Vec::with_capacity(prefix.len() + 8);
                key.extend_from_slice(prefix);
                key.extend_from_slice(&offset.to_be_bytes());
                tag_keys.push(key);
            }
        }
        apply(&mut tx, &c.sql, &runs(ops, &tag_keys)).map_err(Failure::final_)?;
        tx.commit().map_err(Failure::commit).map(Ok)
    }
}

/// Why a batch issued under `fence` may not commit, given the lease rows
/// `(shard, epoch, owner)` now in the table; `None`: every lease holds.
fn fence_broken(fence: &[Fence], held: &[(i32, i64, String)]) -> Option<String> {
    fence.iter().find_map(|f| match held.iter().find(|h| h.0 == f.shard as i32) {
        Some((_, epoch, _)) if *epoch == f.epoch => None,
        Some((_, epoch, owner)) => {
            Some(format!("shard {} is at epoch {epoch} (owner {owner}), the batch was issued under epoch {}", f.shard, f.epoch))
        }
        None => Some(format!("shard {} has no lease, the batch was issued under epoch {}", f.shard, f.epoch)),
    })
}

/// Shard leases (see [`super::lease`]), all timed by the database clock.
impl PostgresStore {
    /// Batches refused by fencing since start.
    pub fn fencing_rejections(&self) -> u64 {
        self.fencing_rejections.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records `shards` as the cluster's shard count on first use; returns
    /// the count the cluster was set up with (this one or an earlier one).
    pub fn settle_shards(&self, shards: u32) -> io::Result<u32> {
        let value = shards.to_string();
        self.run("reading the cluster settings", |c| {
            c.client
                .execute("INSERT INTO massa_settings (name, value) VALUES ('shards', $1) ON CONFLICT (name) DO NOTHING", &[&value])
                .map_err(Failure::retry_safe)?;
            let stored: String =
                c.client.query_one("SELECT value FROM massa_settings WHERE name = 'shards'", &[]).map_err(Failure::retry_safe)?.get(0);
            Ok(stored)
        })?
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("PostgreSQL at {}: massa_settings.shards is not a number", self.target)))
    }

    /// Takes `shard`'s lease for `owner` until `duration` from now, unless
    /// another owner holds it unexpired. Every acquisition bumps the epoch,
    /// which fences every batch issued under an earlier one. `Ok(Err(o))`:
    /// `o` holds it.
    pub fn acquire_lease(&self, shard: u32, owner: &str, duration: Duration) -> io::Result<Result<i64, String>> {
        let (shard, secs) = (shard as i32, duration.as_secs_f64());
        self.run("acquiring a shard lease", |c| {
            let taken = c
                .client
                .query_opt(
                    "INSERT INTO massa_leases AS l (shard, owner, epoch, expires_at) VALUES ($1, $2, 1, now() + make_interval(secs => $3)) \
                     ON CONFLICT (shard) DO UPDATE SET owner = excluded.owner, epoch = l.epoch + 1, expires_at = excluded.expires_at \
                     WHERE l.expires_at < now() OR l.owner = excluded.owner RETURNING epoch",
                    &[&shard, &owner, &secs],
                )
                .map_err(Failure::final_)?;
            if let Some(row) = taken {
                return Ok(Ok(row.get(0)));
            }
            let holder = c.client.query_opt("SELECT owner FROM massa_leases WHERE shard = $1", &[&shard]).map_err(Failure::retry_safe)?;
            Ok(Err(holder.map_or_else(|| "unknown".to_owned(), |r| r.get(0))))
        })
    }

    /// Extends every lease of `held` that `owner` still has at that epoch
    /// to `duration` from now; returns the shards renewed.
    pub fn renew_leases(&self, owner: &str, held: &[Fence], duration: Duration) -> io::Result<Vec<u32>> {
        self.set_expiry("renewing shard leases", owner, held, Some(duration))
    }

    /// Ends `owner`'s leases of `held` now, so others can take them at once.
    /// The rows stay: epochs only ever grow.
    pub fn release_leases(&self, owner: &str, held: &[Fence]) -> io::Result<()> {
        self.set_expiry("releasing shard leases", owner, held, None).map(drop)
    }

    /// Sets the expiry of `owner`'s leases of `held` (at those epochs) to
    /// `duration` from now, or ends them (`None`); returns the shards set.
    /// The rows are locked in shard order first, the order every batch's
    /// fence locks them in, so a renewal and a batch never deadlock.
    fn set_expiry(&self, what: &str, owner: &str, held: &[Fence], duration: Option<Duration>) -> io::Result<Vec<u32>> {
        let (shards, epochs): (Vec<i32>, Vec<i64>) = held.iter().map(|f| (f.shard as i32, f.epoch)).unzip();
        let secs = duration.map(|d| d.as_secs_f64());
        self.run(what, |c| {
            let mut tx = c.client.transaction().map_err(Failure::retry_safe)?;
            tx.execute("SELECT 1 FROM massa_leases WHERE shard = ANY($1::int[]) ORDER BY shard FOR NO KEY UPDATE", &[&shards])
                .map_err(Failure::retry_safe)?;
            let rows = tx
                .query(
                    "UPDATE massa_leases AS l \
                     SET expires_at = CASE WHEN $2::float8 IS NULL THEN '-infinity' ELSE now() + make_interval(secs => $2::float8) END \
                     FROM unnest($3::int[], $4::bigint[]) AS h(shard, epoch) \
                     WHERE l.shard = h.shard AND l.epoch = h.epoch AND l.owner = $1 RETURNING l.shard",
                    &[&owner, &secs, &shards, &epochs],
                )
                .map_err(Failure::retry_safe)?;
            // Changed nothing if COMMIT fails: the leases simply run out.
            tx.commit().map_err(Failure::retry_safe)?;
            Ok(rows.iter().map(|r| r.get::<_, i32>(0) as u32).collect())
        })
    }
}

/// The statements of one batch inside its transaction (everything a batch
/// writes goes through here, before COMMIT).
fn apply(tx: &mut Transaction<'_>, sql: &Statements, runs: &[Run<'_>]) -> Result<(), postgres::Error> {
    for run in runs {
        match run {
            Run::Insert(keys, values) => tx.execute(&sql.insert, &[keys, values])?,
            Run::Put(keys, values) => tx.execute(&sql.upsert, &[keys, values])?,
            Run::Delete(keys) => tx.execute(&sql.delete, &[keys])?,
        };
    }
    Ok(())
}

/// Consecutive ops of one kind, one statement each; in order, so a batch
/// means what it means to RocksDB (a delete then a put of a key leaves it).
#[derive(Debug, PartialEq)]
enum Run<'a> {
    Insert(Vec<&'a [u8]>, Vec<&'a [u8]>),
    Put(Vec<&'a [u8]>, Vec<&'a [u8]>),
    Delete(Vec<&'a [u8]>),
}

/// Groups `ops` into [`Run`]s, writing the `i`-th [`Op::Tag`] at
/// `tag_keys[i]`. A put of a key already in the current put run starts a
/// new one: one upsert statement cannot update a row twice.
fn runs<'a>(ops: &'a [Op], tag_keys: &'a [Vec<u8>]) -> Vec<Run<'a>> {
    fn insert<'a>(runs: &mut Vec<Run<'a>>, k: &'a [u8], v: &'a [u8]) {
        match runs.last_mut() {
            Some(Run::Insert(keys, values)) => {
                keys.push(k);
                values.push(v);
            }
            _ => runs.push(Run::Insert(vec![k], vec![v])),
        }
    }
    let mut runs: Vec<Run<'a>> = Vec::new();
    let mut tag_keys = tag_keys.iter();
    for op in ops {
        match op {
            Op::Insert(k, v) => insert(&mut runs, k, v),
            Op::Tag(_, v) => insert(&mut runs, tag_keys.next().expect("a key for every tag entry"), v),
            Op::Put(k, v) => match runs.last_mut() {
                Some(Run::Put(keys, values)) if !keys.contains(&k.as_slice()) => {
                    keys.push(k);
                    values.push(v);
                }
                _ => runs.push(Run::Put(vec![k], vec![v])),
            },
            Op::Delete(k) => match runs.last_mut() {
                Some(Run::Delete(keys)) => keys.push(k),
                _ => runs.push(Run::Delete(vec![k])),
            },
        }
    }
    runs
}

/// The least key above every key that starts with `prefix` (`None`: there
/// is none, scan to the end).
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// `host:port/dbname` of every host the config names.
fn describe(config: &postgres::Config) -> String {
    let ports = config.get_ports();
    let mut out = String::new();
    for (i, host) in config.get_hosts().iter().enumerate() {
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        if i > 0 {
            out.push(',');
        }
        match host {
            Host::Tcp(name) => write!(out, "{name}:{port}"),
            Host::Unix(dir) => write!(out, "{}:{port}", dir.display()),
        }
        .expect("writing to a String");
    }
    if out.is_empty() {
        out.push_str("localhost:5432");
    }
    write!(out, "/{}", config.get_dbname().or(config.get_user()).unwrap_or("")).expect("writing to a String");
    out
}

/// The client's error with its cause (the server's message, an I/O error).
fn describe_error(e: &postgres::Error) -> String {
    match e.source() {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successor_bounds_exactly_the_keys_with_the_prefix() {
        assert_eq!(successor(b"E\0\0\0\x01a"), Some(b"E\0\0\0\x01b".to_vec()));
        assert_eq!(successor(b"a\xff\xff"), Some(b"b".to_vec()));
        assert_eq!(successor(b"\xff"), None);
        assert_eq!(successor(b""), None);
        for key in [&b"a\xff\xff"[..], b"a\xff\xff\x00", b"a\xff\xff\xff\xff"] {
            assert!(key < successor(b"a\xff\xff").unwrap().as_slice());
        }
    }

    #[test]
    fn runs_keep_the_batch_order_place_tag_entries_at_their_offsets_and_never_upsert_a_row_twice() {
        let put = |k: &str| Op::Put(k.into(), b"v".to_vec());
        let ops = vec![
            Op::Insert(b"e1".to_vec(), b"x".to_vec()),
            Op::Tag(b"T".to_vec(), b"y".to_vec()),
            put("a"),
            put("b"),
            put("a"),
            Op::Delete(b"d1".to_vec()),
            Op::Delete(b"d2".to_vec()),
            put("d1"),
        ];
        let v: &[u8] = b"v";
        assert_eq!(
            runs(&ops, &[b"T\0\0\0\0\0\0\0\x07".to_vec()]),
            [
                Run::Insert(vec![b"e1", b"T\0\0\0\0\0\0\0\x07"], vec![b"x", b"y"]),
                Run::Put(vec![b"a", b"b"], vec![v, v]),
                Run::Put(vec![b"a"], vec![v]),
                Run::Delete(vec![b"d1", b"d2"]),
                Run::Put(vec![b"d1"], vec![v]),
            ]
        );
    }

    #[test]
    fn a_fence_holds_only_if_every_shard_is_at_its_epoch() {
        let held = [(1, 4, "a".to_owned()), (2, 9, "b".to_owned())];
        let fence = |shard, epoch| Fence { shard, epoch };
        assert_eq!(fence_broken(&[fence(1, 4)], &held), None);
        assert_eq!(fence_broken(&[], &held), None);
        let stale = fence_broken(&[fence(1, 4), fence(2, 8)], &held).expect("shard 2 moved on");
        assert!(stale.contains("shard 2 is at epoch 9 (owner b)") && stale.contains("epoch 8"), "{stale}");
        let gone = fence_broken(&[fence(3, 1)], &held).expect("no row");
        assert!(gone.contains("shard 3 has no lease"), "{gone}");
    }

    #[test]
    fn the_target_names_hosts_and_database_but_no_password() {
        let config: postgres::Config = "postgresql://massa:secret@db.example:6543/state".parse().unwrap();
        assert_eq!(describe(&config), "db.example:6543/state");
        let config: postgres::Config = "host=/run/postgresql user=massa".parse().unwrap();
        assert_eq!(describe(&config), "/run/postgresql:5432/massa");
    }
}
