//! Exact order statistics of latency samples (replaces an HDR histogram: the sample counts
//! here are small enough to keep every sample, so percentiles are exact, not bucketed).

/// Nanosecond samples, kept whole.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    v: Vec<u64>,
    sorted: bool,
}

impl Samples {
    /// An empty set with room for `n` samples.
    pub fn with_capacity(n: usize) -> Samples {
        Samples {
            v: Vec::with_capacity(n),
            sorted: true,
        }
    }

    /// Add one sample.
    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.v.push(ns);
        self.sorted = false;
    }

    /// Add every sample of `other`.
    pub fn add(&mut self, other: &Samples) {
        self.v.extend_from_slice(&other.v);
        self.sorted = false;
    }

    /// How many samples.
    pub fn len(&self) -> usize {
        self.v.len()
    }

    /// No samples?
    pub fn is_empty(&self) -> bool {
        self.v.is_empty()
    }

    fn sort(&mut self) {
        if !self.sorted {
            self.v.sort_unstable();
            self.sorted = true;
        }
    }

    /// The `q`-quantile (0 ≤ q ≤ 1) by the nearest-rank method: the smallest sample with
    /// at least `q` of all samples at or below it. 0 when empty.
    pub fn quantile(&mut self, q: f64) -> u64 {
        if self.v.is_empty() {
            return 0;
        }
        self.sort();
        let n = self.v.len();
        let rank = (q.clamp(0.0, 1.0) * n as f64).ceil() as usize;
        self.v[rank.clamp(1, n) - 1]
    }

    /// The largest sample (0 when empty).
    pub fn max(&self) -> u64 {
        self.v.iter().copied().max().unwrap_or(0)
    }
}

/// The median of `v` (NaN if empty; the mean of the middle two for an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let mut s = Samples::default();
        for x in (1..=1000).rev() {
            s.record(x);
        }
        assert_eq!(s.quantile(0.5), 500);
        assert_eq!(s.quantile(0.99), 990);
        assert_eq!(s.quantile(0.999), 999);
        assert_eq!(s.quantile(1.0), 1000);
        assert_eq!(s.quantile(0.0), 1);
        assert_eq!(s.max(), 1000);
    }

    #[test]
    fn empty_samples_give_zero() {
        let mut s = Samples::default();
        assert_eq!(s.quantile(0.5), 0);
        assert_eq!(s.max(), 0);
    }

    #[test]
    fn adding_merges_and_resorts() {
        let mut a = Samples::default();
        a.record(10);
        assert_eq!(a.quantile(0.5), 10);
        let mut b = Samples::default();
        b.record(1);
        b.record(2);
        a.add(&b);
        assert_eq!(a.quantile(0.5), 2);
        assert_eq!(a.len(), 3);
    }

    #[test]
    fn median_of_even_and_odd_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }
}
