//! The logits file of `llama-perplexity --kl-divergence-base FILE`, read and written.
//!
//! llama.cpp saves a reference model's next-token distributions in this file so another model can
//! later be compared with it (`--kl-divergence`). Reading it lets `gguf-prune eval --kl-base`
//! compare our forward pass with llama.cpp's own logits, and writing the same rows in memory lets
//! `--ref` run exactly llama.cpp's comparison arithmetic. Layout (native byte order, which is
//! little-endian on every platform llama.cpp ships for; see `tools/perplexity/perplexity.cpp`):
//!
//! | bytes | content |
//! |---|---|
//! | 8 | the magic `_logits_` |
//! | 4 | `n_ctx` (i32): tokens per chunk |
//! | 4 | `n_vocab` (i32) |
//! | 4 | `n_chunk` (i32) |
//! | 4 x n_ctx x n_chunk | the token ids (i32) as tokenized, chunk after chunk; position 0 of each chunk is the text's token, not the BOS substituted at evaluation |
//! | per chunk, `n_ctx - 1 - n_ctx/2` rows | one row per scored position `p = n_ctx/2 ..= n_ctx-2` (the distribution of token `p+1`) |
//!
//! A row is `nv = 2*((n_vocab+1)/2) + 4` u16 values: the first four hold two f32, `scale` and
//! `min_log_prob`, then `n_vocab` quantized values `q` (plus one pad u16 when `n_vocab` is odd).
//! The log-probability of token `i` is `scale * q[i] + min_log_prob`. llama.cpp clamps the range to
//! 16 nats below the most likely token: tokens below that are stored as `q = 0`, that is at the
//! floor `min_log_prob`, so a row's probabilities sum to slightly more than 1.

use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{Error, Result};

/// The file's first 8 bytes.
pub const MAGIC: &[u8; 8] = b"_logits_";
/// Bytes before the token ids: magic, n_ctx, n_vocab, n_chunk.
const HEADER_LEN: usize = 8 + 3 * 4;
/// llama.cpp keeps at most this many nats of range below the top logit in a row.
const LOG_RANGE: f32 = 16.0;

/// The number of u16 values in one row for a vocabulary of `n_vocab` (header included).
pub fn row_u16s(n_vocab: usize) -> usize {
    2 * n_vocab.div_ceil(2) + 4
}

/// The number of bytes in one row.
pub fn row_bytes(n_vocab: usize) -> usize {
    2 * row_u16s(n_vocab)
}

/// The first scored position of a window of `n_ctx` tokens (llama.cpp scores the second half).
pub fn first_scored(n_ctx: usize) -> usize {
    n_ctx / 2
}

/// The number of scored positions (rows) per window: `first ..= n_ctx - 2`, since the last
/// position has no next token inside the window.
pub fn rows_per_window(n_ctx: usize) -> usize {
    n_ctx.saturating_sub(1 + first_scored(n_ctx))
}

/// Rounds to the nearest integer, ties to even, by llama.cpp's float trick (`nearest_int`), so
/// the quantized values match its files bit for bit. Valid for |x| < 2^22.
fn nearest_int(x: f32) -> i32 {
    let v = x + 12_582_912.0;
    (v.to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// Encodes one row of logits the way llama.cpp's base run does, into `out` (exactly
/// [`row_bytes`]`(logits.len())` bytes). Returns the row's negative log-likelihood of `target`,
/// computed as llama.cpp computes it there.
pub fn encode_row(logits: &[f32], target: usize, out: &mut [u8]) -> f64 {
    let n_vocab = logits.len();
    debug_assert_eq!(out.len(), row_bytes(n_vocab));
    let mut max = logits[0];
    let mut min = logits[0];
    for &l in &logits[1..] {
        max = max.max(l);
        min = min.min(l);
    }
    let min = min.max(max - LOG_RANGE);
    let sum_exp = super::metrics::sum_exp_shifted_in_order(logits, max);
    let log_sum_exp = sum_exp.ln() as f32;
    let min_log_prob = min - max - log_sum_exp;
    let scale = (max - min) / 65535.0;
    out[0..4].copy_from_slice(&scale.to_le_bytes());
    out[4..8].copy_from_slice(&min_log_prob.to_le_bytes());
    let q = &mut out[8..];
    q.fill(0);
    if scale != 0.0 {
        let inv_scale = 1.0 / scale;
        for (&l, dst) in logits.iter().zip(q.chunks_exact_mut(2)) {
            if l > min {
                let v = nearest_int(inv_scale * (l - min)) as u16;
                dst.copy_from_slice(&v.to_le_bytes());
            }
        }
    }
    (max + log_sum_exp - logits[target]) as f64
}

/// One stored row: a quantized log-probability distribution over the vocabulary.
#[derive(Clone, Copy, Debug)]
pub struct BaseRow<'a> {
    pub scale: f32,
    pub min_log_prob: f32,
    /// `n_vocab` little-endian u16 values.
    q: &'a [u8],
}

impl<'a> BaseRow<'a> {
    /// Views `bytes` (one row, [`row_bytes`]`(n_vocab)` long) as a row of `n_vocab` entries.
    pub fn from_bytes(bytes: &'a [u8], n_vocab: usize) -> BaseRow<'a> {
        let f = |i: usize| f32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        BaseRow {
            scale: f(0),
            min_log_prob: f(4),
            q: &bytes[8..8 + 2 * n_vocab],
        }
    }

    pub fn n_vocab(&self) -> usize {
        self.q.len() / 2
    }

    /// The quantized value of token `i`.
    pub fn q(&self, i: usize) -> u16 {
        u16::from_le_bytes([self.q[2 * i], self.q[2 * i + 1]])
    }

    /// The stored log-probability of token `i`, in f32 as llama.cpp decodes it.
    pub fn log_prob(&self, i: usize) -> f32 {
        self.scale * self.q(i) as f32 + self.min_log_prob
    }

    /// All stored log-probabilities in vocabulary order.
    pub fn log_probs(&self) -> impl Iterator<Item = f32> + '_ {
        self.q
            .chunks_exact(2)
            .map(|b| self.scale * u16::from_le_bytes([b[0], b[1]]) as f32 + self.min_log_prob)
    }
}

/// A `--kl-divergence-base` file, memory-mapped.
pub struct KlBase {
    path: PathBuf,
    map: Mmap,
    n_ctx: usize,
    n_vocab: usize,
    n_chunk: usize,
}

impl std::fmt::Debug for KlBase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KlBase")
            .field("path", &self.path)
            .field("n_ctx", &self.n_ctx)
            .field("n_vocab", &self.n_vocab)
            .field("n_chunk", &self.n_chunk)
            .finish()
    }
}

impl KlBase {
    /// Opens and checks a logits file: magic, header values, and that its length is exactly
    /// what the header implies (a run that died half-way leaves a short file).
    pub fn open(path: &Path) -> Result<KlBase> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        // A named pipe is refused, not waited on; a folder or device cannot be mapped.
        let (file, _) = crate::limits::open_regular(path)?;
        // SAFETY: the map is read-only and private to this value; like every mmap reader we rely
        // on nobody truncating the file while it is open, which would fault rather than corrupt.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        let (n_ctx, n_vocab, n_chunk) = check_layout(&map, path)?;
        Ok(KlBase {
            path: path.to_path_buf(),
            map,
            n_ctx,
            n_vocab,
            n_chunk,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tokens per chunk (the `-c` of the base run).
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    pub fn n_chunks(&self) -> usize {
        self.n_chunk
    }

    /// Scored rows per chunk.
    pub fn rows_per_chunk(&self) -> usize {
        rows_per_window(self.n_ctx)
    }

    /// All stored token ids, `n_ctx * n_chunks` of them.
    pub fn tokens(&self) -> Vec<u32> {
        self.map[HEADER_LEN..HEADER_LEN + 4 * self.n_ctx * self.n_chunk]
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    /// The tokens of chunk `chunk` (as tokenized: position 0 is not replaced by BOS).
    pub fn chunk_tokens(&self, chunk: usize) -> Vec<u32> {
        let start = HEADER_LEN + 4 * self.n_ctx * chunk;
        self.map[start..start + 4 * self.n_ctx]
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    /// Row `row` (0-based, for position `n_ctx/2 + row`) of chunk `chunk`; both must be in range.
    pub fn row(&self, chunk: usize, row: usize) -> BaseRow<'_> {
        assert!(
            chunk < self.n_chunk && row < self.rows_per_chunk(),
            "row ({chunk}, {row}) out of range"
        );
        let rb = row_bytes(self.n_vocab);
        let start = self.rows_offset() + (chunk * self.rows_per_chunk() + row) * rb;
        BaseRow::from_bytes(&self.map[start..start + rb], self.n_vocab)
    }

    /// All rows of chunk `chunk`, as one byte slice of `rows_per_chunk * row_bytes` bytes.
    pub fn chunk_rows(&self, chunk: usize) -> &[u8] {
        let len = self.rows_per_chunk() * row_bytes(self.n_vocab);
        let start = self.rows_offset() + chunk * len;
        &self.map[start..start + len]
    }

    fn rows_offset(&self) -> usize {
        HEADER_LEN + 4 * self.n_ctx * self.n_chunk
    }
}

fn check_layout(bytes: &[u8], path: &Path) -> Result<(usize, usize, usize)> {
    let bad = |offset: usize, what: String| Error::KlBaseFormat {
        path: path.to_path_buf(),
        offset: offset as u64,
        what,
    };
    if bytes.len() < HEADER_LEN {
        return Err(bad(
            0,
            format!(
                "file is {} bytes, shorter than the {HEADER_LEN}-byte header",
                bytes.len()
            ),
        ));
    }
    if &bytes[..8] != MAGIC {
        return Err(bad(
            0,
            format!(
                "magic is {:?}, expected {:?}: not a llama-perplexity --kl-divergence-base file",
                String::from_utf8_lossy(&bytes[..8]),
                "_logits_"
            ),
        ));
    }
    let int = |at: usize, name: &str| -> Result<usize> {
        let v = i32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        if v <= 0 {
            return Err(bad(
                at,
                format!("{name} is {v}, expected a positive number"),
            ));
        }
        Ok(v as usize)
    };
    let n_ctx = int(8, "n_ctx")?;
    let n_vocab = int(12, "n_vocab")?;
    let n_chunk = int(16, "n_chunk")?;
    if rows_per_window(n_ctx) == 0 {
        return Err(bad(8, format!("n_ctx {n_ctx} leaves no scored positions")));
    }
    let expected = (|| {
        let tokens = n_ctx.checked_mul(n_chunk)?.checked_mul(4)?;
        let rows = rows_per_window(n_ctx)
            .checked_mul(n_chunk)?
            .checked_mul(row_bytes(n_vocab))?;
        HEADER_LEN.checked_add(tokens)?.checked_add(rows)
    })()
    .ok_or_else(|| {
        bad(
            8,
            format!("n_ctx {n_ctx} x n_chunk {n_chunk} x n_vocab {n_vocab} overflows"),
        )
    })?;
    if bytes.len() != expected {
        return Err(bad(
            bytes.len().min(expected),
            format!(
                "file is {} bytes, but n_ctx {n_ctx}, n_vocab {n_vocab}, n_chunk {n_chunk} make {expected} \
                 (was the base run interrupted?)",
                bytes.len()
            ),
        ));
    }
    let tokens_end = HEADER_LEN + 4 * n_ctx * n_chunk;
    for (i, b) in bytes[HEADER_LEN..tokens_end].chunks_exact(4).enumerate() {
        let t = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if t < 0 || t as usize >= n_vocab {
            return Err(bad(
                HEADER_LEN + 4 * i,
                format!("token {i} is {t}, outside the vocabulary of {n_vocab}"),
            ));
        }
    }
    Ok((n_ctx, n_vocab, n_chunk))
}

/// Writes a logits file in llama.cpp's layout: the header and `tokens` (`n_ctx * n_chunk` ids),
/// then each chunk's rows, made by [`encode_row`], in chunk order.
pub struct KlBaseWriter<W: std::io::Write> {
    out: W,
    n_vocab: usize,
}

impl<W: std::io::Write> KlBaseWriter<W> {
    pub fn new(mut out: W, n_ctx: usize, n_vocab: usize, tokens: &[u32]) -> std::io::Result<Self> {
        let n_chunk = tokens.len() / n_ctx;
        let int = |v: usize| {
            i32::try_from(v)
                .expect("logits file sizes fit i32")
                .to_le_bytes()
        };
        out.write_all(MAGIC)?;
        out.write_all(&int(n_ctx))?;
        out.write_all(&int(n_vocab))?;
        out.write_all(&int(n_chunk))?;
        for &t in &tokens[..n_chunk * n_ctx] {
            out.write_all(&t.to_le_bytes())?;
        }
        Ok(KlBaseWriter { out, n_vocab })
    }

    /// Appends one encoded row (from [`encode_row`]).
    pub fn write_row(&mut self, row: &[u8]) -> std::io::Result<()> {
        debug_assert_eq!(row.len(), row_bytes(self.n_vocab));
        self.out.write_all(row)
    }

    pub fn finish(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        for (x, want) in [
            (0.0, 0),
            (0.4, 0),
            (0.5, 0),
            (1.5, 2),
            (2.5, 2),
            (65534.6, 65535),
            (-1.5, -2),
        ] {
            assert_eq!(nearest_int(x), want, "nearest_int({x})");
        }
    }

    #[test]
    fn row_sizes_follow_llama_cpp() {
        assert_eq!(row_u16s(49152), 49156);
        assert_eq!(row_u16s(5), 10); // odd vocabularies get one pad value
        assert_eq!(rows_per_window(512), 255);
    }

    #[test]
    fn encoded_row_decodes_to_log_softmax() {
        let logits: Vec<f32> = (0..1001)
            .map(|i| ((i * 37 % 101) as f32) * 0.13 - 3.0)
            .collect();
        let mut row = vec![0u8; row_bytes(logits.len())];
        let nll = encode_row(&logits, 7, &mut row);
        let r = BaseRow::from_bytes(&row, logits.len());
        let max = logits.iter().cloned().fold(f32::MIN, f32::max);
        let lse = max as f64
            + logits
                .iter()
                .map(|&l| ((l - max) as f64).exp())
                .sum::<f64>()
                .ln();
        for (i, lp) in r.log_probs().enumerate() {
            let exact = logits[i] as f64 - lse;
            // Quantization step is range/65535; the range here is 13 nats.
            assert!(
                (lp as f64 - exact).abs() < 2e-4,
                "token {i}: {lp} vs {exact}"
            );
        }
        assert!((nll - (lse - logits[7] as f64)).abs() < 1e-4);
    }

    #[test]
    fn rejects_bad_magic_and_truncation() {
        let mut file = Vec::new();
        let mut w = KlBaseWriter::new(&mut file, 8, 3, &[0, 1, 2, 0, 1, 2, 0, 1]).unwrap();
        let mut row = vec![0u8; row_bytes(3)];
        for _ in 0..rows_per_window(8) {
            encode_row(&[0.0, 1.0, 2.0], 1, &mut row);
            w.write_row(&row).unwrap();
        }
        w.finish();
        assert!(check_layout(&file, Path::new("t")).is_ok());
        let err = check_layout(&file[..file.len() - 1], Path::new("t"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("interrupted"), "{err}");
        let mut bad = file.clone();
        bad[0] = b'X';
        assert!(check_layout(&bad, Path::new("t"))
            .unwrap_err()
            .to_string()
            .contains("magic"));
        let mut bad = file.clone();
        bad[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&7i32.to_le_bytes());
        assert!(check_layout(&bad, Path::new("t"))
            .unwrap_err()
            .to_string()
            .contains("outside the vocabulary"));
    }
}
