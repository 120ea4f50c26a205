//! LinearPatch-style healing: a Hadamard rotation and per-channel scales fused into one map,
//! `T = H diag(s) H^T / d` (`H` a `d x d` Hadamard matrix, `H H^T = d I`). The rotation spreads
//! the few outlier channels of the stream over all channels, so per-channel scales in the
//! rotated basis act evenly; with our fold the fused matrix is just another `T`, so only the
//! `d` scales are fitted: by least squares per rotated channel, with the same relative ridge
//! as the least-squares map, toward 1 (the unhealed block).
//!
//! Hadamard matrices are built by Sylvester's doubling, Paley's construction (order `q + 1` for a
//! prime `q = 3 mod 4`) and Kronecker products; d = 576 (SmolLM2) is 8 x 72, d = 640 (gemma3)
//! 32 x 20. Where none is found the scales are fitted in the stream's own basis.

use crate::error::Result;

use super::fit::{gather, matmul};

/// The fitted map and whether a Hadamard rotation was found for `d`.
pub(super) struct Patch {
    pub t: Vec<f64>,
    pub rotated: bool,
}

/// The patch map on `rows` of `a1` (the absorbing block's FFN output) and `a2` (its target).
pub(super) fn fit_patch(
    a1: &[f32],
    a2: &[f32],
    d: usize,
    rows: &[usize],
    ridge: f64,
) -> Result<Patch> {
    let h = hadamard(d);
    let basis: Vec<f64> = match &h {
        Some(h) => {
            let norm = 1.0 / (d as f64).sqrt();
            h.iter().map(|&v| f64::from(v) * norm).collect()
        }
        None => (0..d * d).map(|k| f64::from(k / d == k % d)).collect(),
    };
    let n = rows.len();
    let m_rot = matmul(&gather(a1, d, rows), &basis, n, d, d)?;
    let y_rot = matmul(&gather(a2, d, rows), &basis, n, d, d)?;
    let (mut num, mut den) = (vec![0f64; d], vec![0f64; d]);
    for (mr, yr) in m_rot.chunks(d).zip(y_rot.chunks(d)) {
        for j in 0..d {
            num[j] += mr[j] * yr[j];
            den[j] += mr[j] * mr[j];
        }
    }
    // Ridge toward s = 1, relative to the mean channel energy (as the least-squares map's).
    let alpha = (ridge * den.iter().sum::<f64>() / d as f64).max(f64::MIN_POSITIVE);
    let scales: Vec<f64> = num
        .iter()
        .zip(&den)
        .map(|(n, e)| (n + alpha) / (e + alpha))
        .collect();
    // T = B diag(s) B^T with B the orthonormal basis.
    let scaled: Vec<f64> = basis
        .iter()
        .enumerate()
        .map(|(k, b)| b * scales[k % d])
        .collect();
    let mut bt = vec![0f64; d * d];
    for i in 0..d {
        for j in 0..d {
            bt[j * d + i] = basis[i * d + j];
        }
    }
    let t = matmul(&scaled, &bt, d, d, d)?;
    Ok(Patch {
        t,
        rotated: h.is_some(),
    })
}

/// A Hadamard matrix of order `n` (entries +-1, row-major), if these constructions reach it.
pub(super) fn hadamard(n: usize) -> Option<Vec<i8>> {
    if n == 1 {
        return Some(vec![1]);
    }
    if let Some(h) = paley(n) {
        return Some(h);
    }
    // n = p x (n / p) for a factor p that is 2 or a Paley order.
    (2..=n)
        .filter(|p| n.is_multiple_of(*p) && (*p == 2 || paley(*p).is_some()))
        .find_map(|p| {
            let small = if p == 2 { vec![1, 1, 1, -1] } else { paley(p)? };
            Some(kronecker(&small, p, &hadamard(n / p)?, n / p))
        })
}

/// Paley's construction I: order `n = q + 1`, `q` a prime `= 3 mod 4`; `H = I + S` with
/// `S = [[0, 1^T], [-1, Q]]`, `Q[i][j]` the Legendre symbol of `j - i` mod `q`.
fn paley(n: usize) -> Option<Vec<i8>> {
    let q = n.checked_sub(1)?;
    if q < 3 || q % 4 != 3 || !(2..q).take_while(|k| k * k <= q).all(|k| q % k != 0) {
        return None;
    }
    let mut square = vec![false; q];
    for x in 1..q {
        square[x * x % q] = true;
    }
    let chi = |v: usize| -> i8 {
        match v % q {
            0 => 0,
            r if square[r] => 1,
            _ => -1,
        }
    };
    let mut h = vec![0i8; n * n];
    for i in 0..n {
        for j in 0..n {
            let s = match (i, j) {
                (0, 0) => 0,
                (0, _) => 1,
                (_, 0) => -1,
                _ => chi(j + q - i),
            };
            h[i * n + j] = s + i8::from(i == j);
        }
    }
    Some(h)
}

/// `A (x) B` for `A` `a x a`, `B` `b x b`.
fn kronecker(a: &[i8], na: usize, b: &[i8], nb: usize) -> Vec<i8> {
    let n = na * nb;
    let mut out = vec![0i8; n * n];
    for i in 0..n {
        for j in 0..n {
            out[i * n + j] = a[(i / nb) * na + j / nb] * b[(i % nb) * nb + j % nb];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_hadamard(h: &[i8], n: usize) -> bool {
        (0..n).all(|i| {
            (0..n).all(|j| {
                let dot: i64 = (0..n)
                    .map(|k| i64::from(h[i * n + k]) * i64::from(h[j * n + k]))
                    .sum();
                dot == if i == j { n as i64 } else { 0 }
            })
        })
    }

    #[test]
    fn hadamard_orders_of_the_test_models_and_others() {
        for n in [1, 2, 4, 12, 20, 24, 64, 72, 576, 640] {
            let h = hadamard(n).unwrap_or_else(|| panic!("no Hadamard matrix of order {n}"));
            assert!(is_hadamard(&h, n), "order {n}");
        }
        assert!(hadamard(6).is_none());
    }

    #[test]
    fn patch_recovers_scales_in_the_rotated_basis() {
        let (n, d) = (64, 4);
        let a1: Vec<f32> = (0..n * d).map(|k| ((k * 37 % 11) as f32) - 5.0).collect();
        let p = fit_patch(&a1, &a1, d, &(0..n).collect::<Vec<_>>(), 1e-12).unwrap();
        assert!(p.rotated);
        for (k, v) in p.t.iter().enumerate() {
            let id = f64::from(k / d == k % d);
            assert!((v - id).abs() < 1e-9, "T[{k}] = {v}");
        }
    }
}
