//! ReplaceMe's cosine-distance variant: the map `T` minimising, over the fit rows, the cosine
//! distance between the healed stream `h_l - M + M T` and the target `h_{l+n}`, plus the same
//! ridge toward the identity as the least-squares fit. The next block reads the stream through
//! an RMS norm, so its direction matters more than its length; the cosine fit spends the map's
//! freedom on direction.
//!
//! The loss is not quadratic in `T`. Starting from the least-squares map, a few Gauss-Newton
//! steps (f64) refine it: the curvature of `1 - cos(s, y)` in `s` is about `1 / |s|^2` across
//! `s`'s direction, so the step solves with `M^T W M + a I`, `W = diag(1 / |s_r|^2)`, factored
//! once; a step that does not lower the loss is halved (at most [`HALVINGS`] times).

use crate::error::Result;

use super::fit::{add_ridge, at_b, cholesky, cholesky_apply, gather, matmul};

/// Gauss-Newton steps after the least-squares start: each costs two `n x d x d` products, as
/// much as the least-squares fit itself.
const STEPS: usize = 3;
/// Step halvings tried before a step is given up (and the fit stops).
const HALVINGS: usize = 4;

/// The fit rows of one run in f64: `c = h - M` (the stream without the absorbing block's FFN
/// output), `M`, and the unit target directions.
struct Problem {
    c: Vec<f64>,
    m: Vec<f64>,
    y_unit: Vec<f64>,
    n: usize,
    d: usize,
}

/// The cosine-distance map on `rows`, refined from `t0` (the least-squares map, `d x d`):
/// `h` the stream leaving the absorbing block, `m` its FFN output, `y` the stream leaving the
/// run (rows of `d`).
pub(super) fn fit_cosine(
    (h, m, y): (&[f32], &[f32], &[f32]),
    d: usize,
    rows: &[usize],
    ridge: f64,
    t0: &[f64],
) -> Result<Vec<f64>> {
    let p = Problem::new(h, m, y, d, rows);
    let mut t = t0.to_vec();
    let mut s = p.stream(&t)?;
    // The Gauss-Newton matrix M^T W M + a I, weights from the start.
    let wm: Vec<f64> =
        p.m.chunks(d)
            .zip(s.chunks(d))
            .flat_map(|(mr, sr)| {
                let w = 1.0 / sq_norm(sr).max(f64::MIN_POSITIVE);
                mr.iter().map(move |v| v * w)
            })
            .collect();
    let mut g = at_b(&wm, &p.m, p.n, d, d)?;
    let alpha = add_ridge(&mut g, d, ridge);
    cholesky(&mut g, d)?;
    let mut loss = p.loss(&s, &t, alpha);
    for _ in 0..STEPS {
        crate::interrupt::check()?;
        let step = cholesky_apply(&g, p.gradient(&s, &t, alpha)?, d);
        let mut scale = 1.0;
        let mut accepted = false;
        for _ in 0..=HALVINGS {
            let trial: Vec<f64> = t.iter().zip(&step).map(|(a, b)| a - scale * b).collect();
            let s_trial = p.stream(&trial)?;
            let l = p.loss(&s_trial, &trial, alpha);
            if l < loss {
                (t, s, loss, accepted) = (trial, s_trial, l, true);
                break;
            }
            scale *= 0.5;
        }
        if !accepted {
            break;
        }
    }
    Ok(t)
}

impl Problem {
    fn new(h: &[f32], m: &[f32], y: &[f32], d: usize, rows: &[usize]) -> Problem {
        let m_rows = gather(m, d, rows);
        let c: Vec<f64> = gather(h, d, rows)
            .iter()
            .zip(&m_rows)
            .map(|(h, m)| h - m)
            .collect();
        let mut y_unit = gather(y, d, rows);
        for r in y_unit.chunks_mut(d) {
            let norm = sq_norm(r).sqrt().max(f64::MIN_POSITIVE);
            r.iter_mut().for_each(|v| *v /= norm);
        }
        Problem {
            c,
            m: m_rows,
            y_unit,
            n: rows.len(),
            d,
        }
    }

    /// The healed stream `c + M T` on the fit rows.
    fn stream(&self, t: &[f64]) -> Result<Vec<f64>> {
        let mut s = matmul(&self.m, t, self.n, self.d, self.d)?;
        s.iter_mut().zip(&self.c).for_each(|(s, c)| *s += c);
        Ok(s)
    }

    /// `sum_r (1 - cos(s_r, y_r)) + a/2 |T - I|^2`.
    fn loss(&self, s: &[f64], t: &[f64], alpha: f64) -> f64 {
        let d = self.d;
        let cos: f64 = s
            .chunks(d)
            .zip(self.y_unit.chunks(d))
            .map(|(sr, yr)| 1.0 - dot(sr, yr) / sq_norm(sr).sqrt().max(f64::MIN_POSITIVE))
            .sum();
        cos + 0.5 * alpha * dist_to_identity(t, d)
    }

    /// The loss's gradient in `T`: `M^T G + a (T - I)`, row `r` of `G` being
    /// `-(y_r - cos_r s_r / |s_r|) / |s_r|` (unit `y_r`).
    fn gradient(&self, s: &[f64], t: &[f64], alpha: f64) -> Result<Vec<f64>> {
        let d = self.d;
        let mut gs = vec![0f64; s.len()];
        for ((gr, sr), yr) in gs.chunks_mut(d).zip(s.chunks(d)).zip(self.y_unit.chunks(d)) {
            let norm = sq_norm(sr).sqrt().max(f64::MIN_POSITIVE);
            let cos = dot(sr, yr) / norm;
            for ((g, &sv), &yv) in gr.iter_mut().zip(sr).zip(yr) {
                *g = -(yv - cos * sv / norm) / norm;
            }
        }
        let mut grad = at_b(&self.m, &gs, self.n, d, d)?;
        for i in 0..d {
            for j in 0..d {
                let id = if i == j { 1.0 } else { 0.0 };
                grad[i * d + j] += alpha * (t[i * d + j] - id);
            }
        }
        Ok(grad)
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn sq_norm(a: &[f64]) -> f64 {
    dot(a, a)
}

/// `|T - I|^2` (Frobenius) for `T` `d x d`.
fn dist_to_identity(t: &[f64], d: usize) -> f64 {
    t.iter()
        .enumerate()
        .map(|(k, v)| {
            let id = if k / d == k % d { 1.0 } else { 0.0 };
            (v - id).powi(2)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Targets that are a positive rescaling, row by row, of `c + M T*`: the cosine fit reaches
    /// cosine 1 from the identity, which least squares cannot (it matches lengths too).
    #[test]
    fn cosine_fit_lowers_the_cosine_distance() {
        let (n, d) = (300, 6);
        let mut rnd = super::super::fit::test_numbers(99);
        let h: Vec<f32> = (0..n * d).map(|_| rnd() as f32).collect();
        let m: Vec<f32> = (0..n * d).map(|_| rnd() as f32).collect();
        let t_true: Vec<f64> = (0..d * d)
            .map(|k| if k / d == k % d { 1.5 } else { 0.3 * rnd() })
            .collect();
        let mut y = vec![0f32; n * d];
        for r in 0..n {
            let scale = 1.0 + 2.0 * (rnd() + 0.5);
            for j in 0..d {
                let mt: f64 = (0..d)
                    .map(|k| m[r * d + k] as f64 * t_true[k * d + j])
                    .sum();
                y[r * d + j] = (scale * (h[r * d + j] as f64 - m[r * d + j] as f64 + mt)) as f32;
            }
        }
        let rows: Vec<usize> = (0..n).collect();
        let eye: Vec<f64> = (0..d * d).map(|k| f64::from(k / d == k % d)).collect();
        let p = Problem::new(&h, &m, &y, d, &rows);
        let before = p.loss(&p.stream(&eye).unwrap(), &eye, 0.0);
        let t = fit_cosine((&h, &m, &y), d, &rows, 1e-9, &eye).unwrap();
        let after = p.loss(&p.stream(&t).unwrap(), &t, 0.0);
        assert!(after < 0.05 * before, "{before} -> {after}");
    }
}
