//! Results: latency histogram, status counts, the ghz-style summary and
//! ghz's JSON output format.

use std::{collections::BTreeMap, fmt::Write, time::Duration};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Largest latency recorded (ns); longer calls are clamped to it.
const MAX_NS: u64 = 60_000_000_000;
const PERCENTILES: [f64; 7] = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0];

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
        let _ = writeln!(out, "\nLatency distribution:");
        for p in PERCENTILES.iter().chain(&[99.9]) {
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

    /// ghz's JSON report (durations in nanoseconds).
    pub fn ghz_json(&self, total: Duration, end_reason: &str) -> Value {
        let count = self.count();
        let buckets = 10u64;
        let (min, max) = (self.latency.min(), self.latency.max());
        let step = ((max - min) / buckets).max(1);
        let histogram: Vec<Value> = (0..=buckets)
            .map(|b| {
                let mark = min + b * step;
                let n = self.latency.count_between(mark, (mark + step - 1).min(MAX_NS));
                json!({"mark": mark as f64 / 1e9, "count": n, "frequency": n as f64 / count.max(1) as f64})
            })
            .collect();
        let distribution: Vec<Value> = PERCENTILES
            .iter()
            .chain(&[99.9])
            .map(|p| json!({"percentage": p, "latency": self.latency.value_at_quantile(p / 100.0)}))
            .collect();
        json!({
            "endReason": end_reason,
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
        })
    }
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
        let v = a.ghz_json(Duration::from_secs(2), "normal");
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
    }
}
