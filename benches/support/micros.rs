//! Latency histograms in microseconds (1 µs to 60 s, three significant digits) and the one
//! line each benchmark prints per histogram: count, p50, p90, p99, p99.9, max and mean.

use hdrhistogram::Histogram;

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

pub fn report(name: &str, h: &Histogram<u64>) {
    println!(
        "{name:<58} n={:<5} p50={:>7} µs  p90={:>7} µs  p99={:>7} µs  p99.9={:>7} µs  max={:>7} µs  mean={:>9.1} µs",
        h.len(),
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.90),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
        h.mean()
    );
}
