//! The least-squares side of healing: which token rows the fit and the held-back check use
//! (outliers left out, see the module docs of [`super`]), the error measures over those rows, and
//! the ridge fit of the map `T`.

use crate::error::{Error, Result};

/// The token rows of one run (the fit windows' rows first, then the held-back windows'), split by
/// whether they are ordinary tokens or outliers.
pub(super) struct Rows {
    /// Ordinary rows of the fit windows.
    pub fit: Vec<usize>,
    /// Ordinary rows of the held-back windows.
    pub held: Vec<usize>,
    /// Outlier rows of the fit windows: they enter the fit only as anchors.
    pub anchors: Vec<usize>,
    /// Outlier rows of the held-back windows: checked apart (a fold must not wreck them).
    pub sinks: Vec<usize>,
    /// Outlier rows in all.
    pub excluded: usize,
}

impl Rows {
    /// Splits the rows of `h` (the stream leaving the absorbing block, `n` rows of `d`, windows of
    /// `lens` tokens, the first `fit_rows` rows in fit windows) by [`row_mask`].
    pub fn new(h: &[f32], d: usize, lens: &[usize], fit_rows: usize, factor: f64) -> Rows {
        let mask = row_mask(h, d, lens, factor);
        let n = mask.len();
        let keep = |range: std::ops::Range<usize>, ordinary: bool| -> Vec<usize> {
            range.filter(|&r| mask[r] == ordinary).collect()
        };
        Rows {
            fit: keep(0..fit_rows, true),
            held: keep(fit_rows..n, true),
            anchors: keep(0..fit_rows, false),
            sinks: keep(fit_rows..n, false),
            excluded: mask.iter().filter(|&&k| !k).count(),
        }
    }

    /// The rows of the normal equations: the ordinary fit rows, then the anchors.
    pub fn anchored(&self) -> Vec<usize> {
        self.fit.iter().chain(&self.anchors).copied().collect()
    }

    /// Why the run cannot be fitted for want of rows, if it cannot.
    pub fn too_few(&self, d: usize) -> Option<String> {
        (self.fit.len() < 2 * d.min(64) || self.held.is_empty()).then(|| {
            format!(
                "too few calibration tokens after leaving out outliers ({} fit, {} held back)",
                self.fit.len(),
                self.held.len()
            )
        })
    }
}

/// Rows to use: not the first position of a window, stream norm at most `factor` x median.
fn row_mask(h: &[f32], d: usize, lens: &[usize], factor: f64) -> Vec<bool> {
    let norms: Vec<f64> = h
        .chunks(d)
        .map(|r| {
            r.iter()
                .map(|&v| (v as f64) * (v as f64))
                .sum::<f64>()
                .sqrt()
        })
        .collect();
    let mut sorted = norms.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let median = sorted[sorted.len() / 2];
    let mut mask: Vec<bool> = norms
        .iter()
        .map(|&n| n.is_finite() && n <= factor * median)
        .collect();
    let mut start = 0;
    for &l in lens {
        if l > 0 {
            mask[start] = false;
        }
        start += l;
    }
    mask
}

/// Mean over `rows` of `sum_j term(r * d + j)` (0 for no rows): every measure of the report is
/// one of these, summed in the same order.
fn mean_row_sum(rows: &[usize], d: usize, term: impl Fn(usize) -> f64) -> f64 {
    rows.iter()
        .map(|&r| (r * d..(r + 1) * d).map(&term).sum::<f64>())
        .sum::<f64>()
        / rows.len().max(1) as f64
}

/// Mean over `rows` of the squared distance `|a_r - b_r|^2` (`a`, `b`: rows of `d`).
pub(super) fn mean_sq_dist(a: &[f32], b: &[f32], d: usize, rows: &[usize]) -> f64 {
    mean_row_sum(rows, d, |i| ((a[i] - b[i]) as f64).powi(2))
}

/// Mean over `rows` of the squared norm `|a_r|^2`.
pub(super) fn mean_sq_norm(a: &[f32], d: usize, rows: &[usize]) -> f64 {
    mean_row_sum(rows, d, |i| (a[i] as f64).powi(2))
}

/// The map `T = I + (A1^T A1 + a I)^-1 A1^T (A2 - A1)` fitted on `rows` of `a1` (the absorbing
/// block's FFN output) and `a2` (its target), in f64, `d x d` row-major.
///
/// Ridge toward the identity (T = I + delta, delta shrunk to zero): directions the fit rows do
/// not explore, such as the attention-sink positions left out, keep the unhealed map.
pub(super) fn fit_map(
    a1: &[f32],
    a2: &[f32],
    d: usize,
    rows: &[usize],
    ridge: f64,
) -> Result<Vec<f64>> {
    let a1_fit = gather(a1, d, rows);
    let a2_fit = gather(a2, d, rows);
    let resid: Vec<f64> = a2_fit.iter().zip(&a1_fit).map(|(b, a)| b - a).collect();
    crate::interrupt::check()?;
    let mut t = ridge_solve(&a1_fit, &resid, rows.len(), d, ridge)?;
    for i in 0..d {
        t[i * d + i] += 1.0;
    }
    Ok(t)
}

/// Rows `rows` of `a` (rows of `d`) in f64.
pub(super) fn gather(a: &[f32], d: usize, rows: &[usize]) -> Vec<f64> {
    let mut out = Vec::with_capacity(rows.len() * d);
    for &r in rows {
        out.extend(a[r * d..(r + 1) * d].iter().map(|&v| v as f64));
    }
    out
}

/// `T = (A^T A + a I)^-1 A^T B`, `a = ridge * trace(A^T A) / d`; A, B: `n x d` row-major.
pub fn ridge_solve(a: &[f64], b: &[f64], n: usize, d: usize, ridge: f64) -> Result<Vec<f64>> {
    let mut g = at_b(a, a, n, d, d)?;
    let atb = at_b(a, b, n, d, d)?;
    add_ridge(&mut g, d, ridge);
    cholesky(&mut g, d)?;
    Ok(cholesky_apply(&g, atb, d))
}

/// Adds `a I` to the `d x d` matrix `g`, `a = ridge * trace(g) / d` (at least the smallest
/// positive f64); returns `a`.
pub(super) fn add_ridge(g: &mut [f64], d: usize, ridge: f64) -> f64 {
    let trace: f64 = (0..d).map(|i| g[i * d + i]).sum();
    let alpha = (ridge * trace / d as f64).max(f64::MIN_POSITIVE);
    for i in 0..d {
        g[i * d + i] += alpha;
    }
    alpha
}

fn candle_err(e: candle_core::Error) -> Error {
    Error::Candle {
        what: "heal fit".into(),
        source: e,
    }
}

/// `A^T B` for `A` `n x k` and `B` `n x m`, row-major f64: `k x m`.
pub(super) fn at_b(a: &[f64], b: &[f64], n: usize, k: usize, m: usize) -> Result<Vec<f64>> {
    use candle_core::{Device, Tensor};
    let run = || -> candle_core::Result<Vec<f64>> {
        let at = Tensor::from_slice(a, (n, k), &Device::Cpu)?;
        let bt = Tensor::from_slice(b, (n, m), &Device::Cpu)?;
        at.t()?.matmul(&bt)?.flatten_all()?.to_vec1()
    };
    run().map_err(candle_err)
}

/// `A B` for `A` `n x k` and `B` `k x m`, row-major f64: `n x m`.
pub(super) fn matmul(a: &[f64], b: &[f64], n: usize, k: usize, m: usize) -> Result<Vec<f64>> {
    use candle_core::{Device, Tensor};
    let run = || -> candle_core::Result<Vec<f64>> {
        let at = Tensor::from_slice(a, (n, k), &Device::Cpu)?;
        let bt = Tensor::from_slice(b, (k, m), &Device::Cpu)?;
        at.matmul(&bt)?.flatten_all()?.to_vec1()
    };
    run().map_err(candle_err)
}

/// Overwrites the symmetric positive definite `g` (`d x d`) with its lower Cholesky factor.
pub(super) fn cholesky(g: &mut [f64], d: usize) -> Result<()> {
    for j in 0..d {
        let mut s = g[j * d + j];
        for k in 0..j {
            s -= g[j * d + k] * g[j * d + k];
        }
        if s.is_nan() || s <= 0.0 {
            return Err(Error::Heal(format!(
                "the fit's normal matrix is not positive definite at column {j} (pivot {s:e})"
            )));
        }
        let l = s.sqrt();
        g[j * d + j] = l;
        for i in j + 1..d {
            let mut s = g[i * d + j];
            for k in 0..j {
                s -= g[i * d + k] * g[j * d + k];
            }
            g[i * d + j] = s / l;
        }
    }
    Ok(())
}

/// Solves `G X = B` given `G`'s Cholesky factor `l` ([`cholesky`]), `B` `d x d`; returns X
/// row-major.
pub(super) fn cholesky_apply(g: &[f64], mut b: Vec<f64>, d: usize) -> Vec<f64> {
    // L Z = B, then L^T X = Z, all right-hand sides at once (rows of B).
    for i in 0..d {
        for k in 0..i {
            let f = g[i * d + k];
            if f != 0.0 {
                let (head, tail) = b.split_at_mut(i * d);
                let src = &head[k * d..(k + 1) * d];
                tail[..d].iter_mut().zip(src).for_each(|(t, s)| *t -= f * s);
            }
        }
        let l = g[i * d + i];
        b[i * d..(i + 1) * d].iter_mut().for_each(|v| *v /= l);
    }
    for i in (0..d).rev() {
        for k in i + 1..d {
            let f = g[k * d + i];
            if f != 0.0 {
                let (head, tail) = b.split_at_mut(k * d);
                let dst = &mut head[i * d..(i + 1) * d];
                dst.iter_mut()
                    .zip(&tail[..d])
                    .for_each(|(t, s)| *t -= f * s);
            }
        }
        let l = g[i * d + i];
        b[i * d..(i + 1) * d].iter_mut().for_each(|v| *v /= l);
    }
    b
}

/// A deterministic stream of numbers in [-0.5, 0.5) for the fits' tests.
#[cfg(test)]
pub(super) fn test_numbers(mut s: u64) -> impl FnMut() -> f64 {
    move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 33) as f64 / (1u64 << 31) as f64) - 0.5
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ridge_recovers_an_exact_map() {
        let (n, d) = (200, 7);
        let mut rnd = test_numbers(12345);
        let a: Vec<f64> = (0..n * d).map(|_| rnd()).collect();
        let t_true: Vec<f64> = (0..d * d).map(|_| rnd()).collect();
        let mut b = vec![0f64; n * d];
        for r in 0..n {
            for j in 0..d {
                b[r * d + j] = (0..d).map(|k| a[r * d + k] * t_true[k * d + j]).sum();
            }
        }
        let t = ridge_solve(&a, &b, n, d, 1e-14).unwrap();
        for (x, y) in t.iter().zip(&t_true) {
            assert!((x - y).abs() < 1e-9, "{x} vs {y}");
        }
    }
}
