//! Results: latency histogram, status counts, the ghz-style summary and
//! ghz's JSON output format.

use std::{
    collections::BTreeMap,
    fmt::Write,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Largest latency recorded (ns); longer calls are clamped to it.
const MAX_NS: u64 = 60_000_000_000;
/// ghz's percentiles plus p99.9, which tail-latency comparisons need.
const PERCENTILES: [f64; 8] = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9];
/// Buckets in the response time histogram (ghz uses 10 plus the fastest).
const BUCKETS: u64 = 10;
/// Width of the longest bar in the summary's histogram.
const BAR: u64 = 40;

/// One worker's results; merged at the end.
pub struct Stats {
    pub latency: Histogram<u64>,
    /// By gRPC status name (`OK`, `UNAVAILABLE`, ...).
    pub codes: BTreeMap<String, u64>,
    /// By error message, for failed calls.
    pub errors: BTreeMap<String, u64>,
    pub sum_ns: u128,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            latency: Histogram::new_with_bounds(1, MAX_NS, 3).expect("static bounds"),
            codes: BTreeMap::new(),
            errors: BTreeMap::new(),
            sum_ns: 0,
        }
    }
}

impl Stats {
    pub fn record(&mut self, latency: Duration, code: &str, error: Option<String>) {
        let ns = (latency.as_nanos() as u64).clamp(1, MAX_NS);
        let _ = self.latency.record(ns);
        self.sum_ns += u128::from(ns);
        *self.codes.entry(code.to_owned()).or_default() += 1;
        if let Some(e) = error {
            *self.errors.entry(e).or_default() += 1;
        }
    }

    pub fn merge(&mut self, other: &Stats) {
        let _ = self.latency.add(&other.latency);
        self.sum_ns += other.sum_ns;
        for (k, v) in &other.codes {
            *self.codes.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
    }

    pub fn count(&self) -> u64 {
        self.latency.len()
    }

    fn average_ns(&self) -> u64 {
        self.sum_ns.checked_div(u128::from(self.count())).unwrap_or(0) as u64
    }

    fn rps(&self, total: Duration) -> f64 {
        self.count() as f64 / total.as_secs_f64().max(1e-9)
    }

    /// The response time histogram: `(mark, count)` pairs from the fastest
    /// call up, each bucket holding the calls from its mark to the next.
    /// Each recorded value lands in exactly one bucket (range queries on the
    /// HDR histogram would count values near a boundary twice).
    fn buckets(&self) -> Vec<(u64, u64)> {
        let (min, max) = (self.latency.min(), self.latency.max());
        let step = ((max - min) / BUCKETS).max(1);
        let mut counts = [0u64; BUCKETS as usize + 1];
        for v in self.latency.iter_recorded() {
            let b = ((v.value_iterated_to().saturating_sub(min)) / step).min(BUCKETS);
            counts[b as usize] += v.count_at_value();
        }
        counts.iter().enumerate().map(|(b, &n)| (min + b as u64 * step, n)).collect()
    }

    /// The human summary, laid out like ghz's.
    pub fn summary(&self, total: Duration) -> String {
        let ms = |ns: u64| format!("{:.2} ms", ns as f64 / 1e6);
        let mut out = String::new();
        let _ = writeln!(out, "\nSummary:");
        let _ = writeln!(out, "  Count:\t{}", self.count());
        let _ = writeln!(out, "  Total:\t{:.2} s", total.as_secs_f64());
        let _ = writeln!(out, "  Slowest:\t{}", ms(self.latency.max()));
        let _ = writeln!(out, "  Fastest:\t{}", ms(self.latency.min()));
        let _ = writeln!(out, "  Average:\t{}", ms(self.average_ns()));
        let _ = writeln!(out, "  Requests/sec:\t{:.2}", self.rps(total));
        if self.count() > 0 {
            let buckets = self.buckets();
            let most = buckets.iter().map(|b| b.1).max().unwrap_or(1).max(1);
            let _ = writeln!(out, "\nResponse time histogram:");
            for (mark, n) in buckets {
                let bar = "∎".repeat((n * BAR / most) as usize);
                let _ = writeln!(out, "  {:<9.3} [{n}]\t|{bar}", mark as f64 / 1e6);
            }
        }
        let _ = writeln!(out, "\nLatency distribution:");
        for p in PERCENTILES {
            let _ = writeln!(out, "  {p} % in {}", ms(self.latency.value_at_quantile(p / 100.0)));
        }
        let _ = writeln!(out, "\nStatus code distribution:");
        for (code, n) in &self.codes {
            let _ = writeln!(out, "  [{code}]\t{n} responses");
        }
        if !self.errors.is_empty() {
            let _ = writeln!(out, "\nError distribution:");
            for (e, n) in &self.errors {
                let _ = writeln!(out, "  [{n}]\t{e}");
            }
        }
        out
    }

    /// ghz's JSON report: durations in nanoseconds, histogram marks in
    /// seconds, so tools written for ghz read it unchanged. `options` echoes
    /// the run's settings as ghz does. Per-call `details` are not kept (they
    /// would cost memory per call), so that list is empty.
    pub fn ghz_json(&self, total: Duration, end_reason: &str, options: Value, date: SystemTime) -> Value {
        let count = self.count();
        let (min, max) = (self.latency.min(), self.latency.max());
        let histogram: Vec<Value> = self
            .buckets()
            .into_iter()
            .map(|(mark, n)| json!({"mark": mark as f64 / 1e9, "count": n, "frequency": n as f64 / count.max(1) as f64}))
            .collect();
        let distribution: Vec<Value> = PERCENTILES
            .iter()
            .map(|&p| {
                // ghz's percentages are integers; only p99.9 needs a fraction.
                let percentage = if p.fract() == 0.0 { json!(p as u64) } else { json!(p) };
                json!({"percentage": percentage, "latency": self.latency.value_at_quantile(p / 100.0)})
            })
            .collect();
        json!({
            "endReason": end_reason,
            "options": options,
            "date": rfc3339(date),
            "count": count,
            "total": total.as_nanos() as u64,
            "average": self.average_ns(),
            "fastest": min,
            "slowest": max,
            "rps": self.rps(total),
            "histogram": histogram,
            "latencyDistribution": distribution,
            "statusCodeDistribution": self.codes,
            "errorDistribution": self.errors,
            "details": [],
        })
    }
}

/// `2006-01-02T15:04:05Z` in UTC, the form ghz writes its `date` in, without
/// a calendar dependency.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_and_reports_in_ghz_shape() {
        let mut a = Stats::default();
        for ms in 1..=100 {
            a.record(Duration::from_millis(ms), "OK", None);
        }
        let mut b = Stats::default();
        b.record(Duration::from_millis(5), "UNAVAILABLE", Some("down".into()));
        a.merge(&b);
        assert_eq!(a.count(), 101);
        let v = a.ghz_json(Duration::from_secs(2), "normal", json!({"call": "a.B/C"}), UNIX_EPOCH + Duration::from_secs(86_400));
        assert_eq!(v["options"]["call"], "a.B/C");
        assert_eq!(v["date"], "1970-01-02T00:00:00Z");
        for key in ["average", "fastest", "slowest", "total"] {
            assert!(v[key].is_u64(), "{key} is integer nanoseconds");
        }
        assert_eq!((v["fastest"].as_u64().unwrap() as f64 / 1e6).round(), 1.0);
        let percentages: Vec<&Value> = v["latencyDistribution"].as_array().unwrap().iter().map(|p| &p["percentage"]).collect();
        assert_eq!(percentages, [&json!(10), &json!(25), &json!(50), &json!(75), &json!(90), &json!(95), &json!(99), &json!(99.9)]);
        let histogram = v["histogram"].as_array().unwrap();
        assert_eq!(histogram.iter().map(|b| b["count"].as_u64().unwrap()).sum::<u64>(), 101);
        assert!(histogram[0]["mark"].is_f64());
        assert_eq!(v["count"], 101);
        assert_eq!(v["statusCodeDistribution"]["OK"], 100);
        assert_eq!(v["statusCodeDistribution"]["UNAVAILABLE"], 1);
        assert_eq!(v["errorDistribution"]["down"], 1);
        assert_eq!(v["total"], 2_000_000_000u64);
        assert!((v["rps"].as_f64().unwrap() - 50.5).abs() < 1e-9);
        let p50 = v["latencyDistribution"][2]["latency"].as_u64().unwrap();
        assert!((49_000_000..=51_000_000).contains(&p50), "{p50}");
        assert_eq!(v["latencyDistribution"][2]["percentage"], 50.0);
        let text = a.summary(Duration::from_secs(2));
        assert!(text.contains("Count:\t101") && text.contains("[UNAVAILABLE]\t1 responses"), "{text}");
        assert!(text.contains("99.9 % in") && text.contains("Response time histogram:"), "{text}");
    }

    #[test]
    fn percentiles_come_from_the_recorded_distribution() {
        let mut s = Stats::default();
        // 900 fast calls at 1 ms and 100 slow ones at 100 ms: p90 is fast,
        // p95 and above are slow.
        (0..900).for_each(|_| s.record(Duration::from_millis(1), "OK", None));
        (0..100).for_each(|_| s.record(Duration::from_millis(100), "OK", None));
        let v = s.ghz_json(Duration::from_secs(1), "normal", Value::Null, UNIX_EPOCH);
        let at = |i: usize| (v["latencyDistribution"][i]["latency"].as_u64().unwrap() as f64 / 1e6).round() as u64;
        assert_eq!((at(0), at(4), at(5), at(7)), (1, 1, 100, 100));
        assert_eq!(v["average"].as_u64().unwrap() / 100_000, 109);
    }

    #[test]
    fn an_empty_run_still_reports() {
        let s = Stats::default();
        let v = s.ghz_json(Duration::from_secs(1), "timeout", Value::Null, UNIX_EPOCH);
        assert_eq!((v["count"].as_u64(), v["average"].as_u64()), (Some(0), Some(0)));
        assert!(s.summary(Duration::from_secs(1)).contains("Count:\t0"));
    }

    #[test]
    fn dates_are_utc_civil_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661)), "2000-02-29T01:01:01Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_700_000_000)), "2023-11-14T22:13:20Z");
    }
}
