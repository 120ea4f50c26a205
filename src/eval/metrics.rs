//! The arithmetic on next-token distributions, shared by layer selection (`score::select`) and
//! evaluation: a row's log-normalizer (log-softmax), negative log-likelihood and perplexity, KL
//! divergence from a reference distribution, the top token, and llama.cpp's summary statistics.
//!
//! Two precisions live here on purpose. Evaluation follows llama.cpp (`expf` of each shifted
//! logit, summed in f64) so that its figures sit beside llama-perplexity's; layer selection
//! computes every term in f64. Each figure keeps the arithmetic it was published with, so the
//! function a caller picks is part of what it reports.

use rayon::prelude::*;

use super::kl_base::BaseRow;

/// Rows longer than this are split across threads (llama.cpp also spreads its log-softmax over
/// all cores): a 262144-token row costs milliseconds, comparable to the forward pass per token.
pub(crate) const PAR_CHUNK: usize = 16384;

/// The largest logit and the first position holding it (llama.cpp's top-token rule: a later
/// equal logit does not replace an earlier one).
pub fn max_and_argmax(row: &[f32]) -> (f32, usize) {
    let mut max = row[0];
    let mut imax = 0;
    for (i, &l) in row.iter().enumerate().skip(1) {
        if l > max {
            max = l;
            imax = i;
        }
    }
    (max, imax)
}

/// `sum exp(l - max)` as llama.cpp's perplexity computes it: each term in f32 (`expf`), summed
/// in f64. Long rows are summed in chunks across threads, the partial sums added in a fixed
/// order, so the result does not depend on the thread count.
pub fn sum_exp_shifted(row: &[f32], max: f32) -> f64 {
    if row.len() < 2 * PAR_CHUNK {
        return sum_exp_shifted_in_order(row, max);
    }
    let parts: Vec<f64> = row
        .par_chunks(PAR_CHUNK)
        .map(|c| sum_exp_shifted_in_order(c, max))
        .collect();
    parts.iter().sum()
}

/// [`sum_exp_shifted`] in one thread, term after term: the order llama.cpp sums a row in when it
/// writes a `--kl-divergence-base` file, so rows encoded here are its rows bit for bit.
pub fn sum_exp_shifted_in_order(row: &[f32], max: f32) -> f64 {
    row.iter().map(|&l| (l - max).exp() as f64).sum()
}

/// `log(softmax(row)[target])` as llama-perplexity scores the first ending token of a HellaSwag
/// or multiple-choice task: the exponentials summed in f64 in order, the probability rounded to
/// f32, then its f32 logarithm.
pub fn log_prob_via_softmax(row: &[f32], target: usize) -> f32 {
    let max = max_and_argmax(row).0;
    let sum = sum_exp_shifted_in_order(row, max);
    (((row[target] - max).exp() as f64 / sum) as f32).ln()
}

/// `row[target] - max - ln(sum exp(row - max))` with the sum in f32, as llama.cpp's
/// `compute_logprobs` (the task scorers' other variant): near-tied answers can depend on
/// which of the two sums a score used.
pub fn log_prob_f32_sum(row: &[f32], target: usize) -> f32 {
    let max = max_and_argmax(row).0;
    let sum = row.iter().fold(0f32, |s, &l| s + (l - max).exp());
    row[target] - max - sum.ln()
}

/// `ln sum exp(row)` with every term in f64, summed in order: the log-normalizer layer
/// selection measures candidates with.
pub fn log_norm_f64(row: &[f32]) -> f64 {
    let max = max_and_argmax(row).0 as f64;
    let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
    max + sum.ln()
}

/// One row's negative log-likelihood of `target`, as llama.cpp's perplexity computes it: max in
/// f32, [`sum_exp_shifted`], `(logit[t] - max)` in f32 minus the f64 log.
pub fn row_nll(row: &[f32], target: usize) -> f64 {
    let max = max_and_argmax(row).0;
    -((row[target] - max) as f64 - sum_exp_shifted(row, max).ln())
}

/// Running sums of per-token negative log-likelihoods.
#[derive(Clone, Copy, Debug, Default)]
pub struct NllSum {
    pub sum: f64,
    pub sum2: f64,
    pub count: usize,
}

impl NllSum {
    pub fn add(&mut self, nll: f64) {
        self.sum += nll;
        self.sum2 += nll * nll;
        self.count += 1;
    }

    /// `exp(mean nll)`: what llama-perplexity prints after each chunk.
    pub fn ppl(&self) -> f64 {
        (self.sum / self.count as f64).exp()
    }

    /// The final estimate and its error, by llama-perplexity's formula. The error is 0 when the
    /// variance is not positive (llama.cpp prints an error instead of an estimate then).
    pub fn estimate(&self) -> (f64, f64) {
        let n = self.count as f64;
        let mean = self.sum / n;
        let ppl = mean.exp();
        let var = self.sum2 / n - mean * mean;
        let err = if var > 0.0 && self.count > 1 {
            (var / (n - 1.0)).sqrt() * ppl
        } else {
            0.0
        };
        (ppl, err)
    }
}

/// A reference distribution kept as its `k` most likely tokens plus the rest as one bucket (a
/// full row is 1 MiB for gemma3), for KL divergence from it in f64.
#[derive(Clone, Debug)]
pub struct TopK {
    /// (token, log-probability), the `k` most likely tokens.
    entries: Vec<(u32, f32)>,
    /// Log of the probability outside `entries`.
    tail: f64,
}

impl TopK {
    /// The `k` most likely tokens of `row` (logits) and the mass left.
    pub fn new(row: &[f32], k: usize) -> TopK {
        let lse = log_norm_f64(row);
        let mut idx: Vec<u32> = (0..row.len() as u32).collect();
        let k = k.min(row.len());
        if k < row.len() {
            idx.select_nth_unstable_by(k - 1, |&a, &b| row[b as usize].total_cmp(&row[a as usize]));
        }
        idx.truncate(k);
        let entries: Vec<(u32, f32)> = idx
            .iter()
            .map(|&i| (i, (row[i as usize] as f64 - lse) as f32))
            .collect();
        let mass: f64 = entries.iter().map(|e| (e.1 as f64).exp()).sum();
        TopK {
            entries,
            tail: (1.0 - mass).max(1e-12).ln(),
        }
    }

    /// Adds KL(self || row) to `total`, row given as logits with their log-normalizer
    /// `log_norm` ([`log_norm_f64`]): the kept tokens one by one, the rest of each distribution
    /// as one bucket. Each term goes straight into `total` (the order selection's figures have
    /// always been summed in), so a sum over rows is not a sum of per-row divergences.
    pub fn add_kl(&self, row: &[f32], log_norm: f64, total: &mut f64) {
        let mut q_mass = 0.0;
        for &(tok, lp) in &self.entries {
            let lq = row[tok as usize] as f64 - log_norm;
            q_mass += lq.exp();
            *total += (lp as f64).exp() * (lp as f64 - lq);
        }
        let lq_tail = (1.0 - q_mass).max(1e-12).ln();
        *total += self.tail.exp() * (self.tail - lq_tail);
    }
}

/// KL(base || row) as llama.cpp's `--kl-divergence` sums it: `p_base (ln p_base - ln q)` in f32
/// over the stored log-probabilities above -16 (llama.cpp skips the rest), with `ln q = logit -
/// log_norm`. Also returns the reference's largest log-probability and its top token (first
/// maximum). Long rows go by chunks across threads, combined in order, keeping the first maximum.
pub fn kl_vs_base(row: &[f32], base: &BaseRow<'_>, log_norm: f32) -> (f64, f32, usize) {
    let part = |start: usize, c: &[f32]| {
        let mut kld = 0f64;
        let mut max_base = f32::NEG_INFINITY;
        let mut imax_base = start;
        for (k, &l) in c.iter().enumerate() {
            let lp_base = base.log_prob(start + k);
            if k == 0 || lp_base > max_base {
                max_base = lp_base;
                imax_base = start + k;
            }
            if lp_base > -16.0 {
                kld += (lp_base.exp() * (lp_base - l + log_norm)) as f64;
            }
        }
        (kld, max_base, imax_base)
    };
    if row.len() < 2 * PAR_CHUNK {
        return part(0, row);
    }
    let parts: Vec<(f64, f32, usize)> = row
        .par_chunks(PAR_CHUNK)
        .enumerate()
        .map(|(j, c)| part(j * PAR_CHUNK, c))
        .collect();
    let mut total = (0f64, f32::NEG_INFINITY, 0usize);
    for (j, (kld, max_base, imax_base)) in parts.into_iter().enumerate() {
        total.0 += kld;
        if j == 0 || max_base > total.1 {
            total.1 = max_base;
            total.2 = imax_base;
        }
    }
    total
}

/// llama.cpp's `mean_and_uncertainty`: the uncertainty is 0 for 10 values or fewer.
pub fn mean_and_uncertainty(sum: f64, sum2: f64, count: usize) -> (f64, f64) {
    if count < 1 {
        return (0.0, 0.0);
    }
    let f = sum / count as f64;
    let df = sum2 / count as f64 - f * f;
    let df = if df > 0.0 && count > 10 {
        (df / (count - 1) as f64).sqrt()
    } else {
        0.0
    };
    (f, df)
}

/// llama.cpp's `covariance` of the two means (0 below 10 values).
pub fn covariance(sum_a: f64, sum_b: f64, sum_ab: f64, count: usize) -> f64 {
    if count < 10 {
        return 0.0;
    }
    let n = count as f64;
    (sum_ab / n - (sum_a / n) * (sum_b / n)) / (n - 1.0)
}

/// llama.cpp's linear-interpolation percentile over sorted values.
pub fn percentile(sorted: &[f32], fraction: f32) -> f32 {
    match sorted {
        [] => 0.0,
        _ if fraction <= 0.0 => sorted[0],
        _ if fraction >= 1.0 => sorted[sorted.len() - 1],
        _ => {
            let p = fraction * (sorted.len() - 1) as f32;
            let ip = p as usize;
            let frac = p - ip as f32;
            (1.0 - frac) * sorted[ip] + frac * sorted[(ip + 1).min(sorted.len() - 1)]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_maximum_wins_ties() {
        assert_eq!(max_and_argmax(&[1.0, 3.0, 3.0, 2.0]), (3.0, 1));
    }

    #[test]
    fn top_k_of_a_row_has_no_divergence_from_it() {
        let row: Vec<f32> = (0..500).map(|i| ((i * 37 % 101) as f32) * 0.05).collect();
        let top = TopK::new(&row, 64);
        let kl = |r: &[f32]| {
            let mut total = 0.0;
            top.add_kl(r, log_norm_f64(r), &mut total);
            total
        };
        assert!(kl(&row).abs() < 1e-9);
        // A flatter row is farther away.
        let flat: Vec<f32> = row.iter().map(|v| v * 0.5).collect();
        assert!(kl(&flat) > 1e-3);
    }

    #[test]
    fn both_precisions_agree_closely() {
        let row: Vec<f32> = (0..70_000)
            .map(|i| ((i * 7919 % 1013) as f32) * 0.01)
            .collect();
        let max = max_and_argmax(&row).0;
        let llama = max as f64 + sum_exp_shifted(&row, max).ln();
        assert!((llama - log_norm_f64(&row)).abs() < 1e-5);
        let seq = sum_exp_shifted_in_order(&row, max);
        assert!((sum_exp_shifted(&row, max) - seq).abs() < 1e-12 * seq);
    }
}
