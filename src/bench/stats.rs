//! Summaries over repetitions: min / median / max of a figure, and the mean of paired ratios with a
//! 95% confidence interval (Student's t, since repetitions are few).

use serde::Serialize;

/// Min, median and max of the repetitions of one figure.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Summary {
    /// Smallest.
    pub min: f64,
    /// Median.
    pub median: f64,
    /// Largest.
    pub max: f64,
    /// Repetitions.
    pub n: usize,
}

impl Summary {
    /// The summary of `values` (NaN figures when empty).
    pub fn of(values: &[f64]) -> Self {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        if n == 0 {
            return Summary {
                min: f64::NAN,
                median: f64::NAN,
                max: f64::NAN,
                n,
            };
        }
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Summary {
            min: v[0],
            median,
            max: v[n - 1],
            n,
        }
    }
}

/// A ratio estimated from paired repetitions (`a[i] / b[i]`).
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Ratio {
    /// Mean of the paired ratios.
    pub mean: f64,
    /// Lower end of the 95% confidence interval (`None` with one repetition).
    pub low: Option<f64>,
    /// Upper end of the 95% confidence interval.
    pub high: Option<f64>,
    /// Pairs.
    pub n: usize,
}

/// Two-sided 97.5% quantiles of Student's t for 1..=30 degrees of freedom.
const T975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
    2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
];

impl Ratio {
    /// The ratio of paired figures `a[i] / b[i]` (pairs with a zero or missing side are skipped).
    pub fn paired(a: &[f64], b: &[f64]) -> Self {
        let r: Vec<f64> = a
            .iter()
            .zip(b)
            .filter(|(x, y)| x.is_finite() && y.is_finite() && **y != 0.0)
            .map(|(x, y)| x / y)
            .collect();
        let n = r.len();
        if n == 0 {
            return Ratio {
                mean: f64::NAN,
                low: None,
                high: None,
                n,
            };
        }
        let mean = r.iter().sum::<f64>() / n as f64;
        if n == 1 {
            return Ratio {
                mean,
                low: None,
                high: None,
                n,
            };
        }
        let var = r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let t = T975[(n - 2).min(T975.len() - 1)];
        let half = t * (var / n as f64).sqrt();
        Ratio {
            mean,
            low: Some(mean - half),
            high: Some(mean + half),
            n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_ratio() {
        let s = Summary::of(&[3.0, 1.0, 2.0, 10.0]);
        assert_eq!((s.min, s.median, s.max, s.n), (1.0, 2.5, 10.0, 4));
        let r = Ratio::paired(&[2.0, 2.2, 1.8], &[1.0, 1.0, 1.0]);
        assert!((r.mean - 2.0).abs() < 1e-12);
        // sd 0.2, n 3, t 4.303: half width 4.303 * 0.2 / sqrt(3).
        let half = 4.303 * 0.2 / 3f64.sqrt();
        assert!((r.low.unwrap() - (2.0 - half)).abs() < 1e-9);
        assert!((r.high.unwrap() - (2.0 + half)).abs() < 1e-9);
        assert_eq!(Ratio::paired(&[1.0], &[0.0]).n, 0);
        assert!(Ratio::paired(&[3.0], &[2.0]).low.is_none());
    }
}
