//! SentencePiece (BPE-by-score) as llama.cpp's `llm_tokenizer_spm_session` runs it: start from
//! single characters, repeatedly merge the adjacent pair whose concatenation is the
//! highest-scoring token (leftmost first on ties), then spell any character that is no token
//! with byte tokens `<0xXX>`.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use super::Vocab;
use crate::error::{Error, Result};

const NONE: usize = usize::MAX;

struct Symbol {
    start: usize,
    len: usize,
    prev: usize,
    next: usize,
}

/// A candidate merge: best score first, then leftmost.
struct Pair {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl PartialEq for Pair {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Pair {}

impl PartialOrd for Pair {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pair {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| Reverse(self.left).cmp(&Reverse(other.left)))
    }
}

/// Appends the ids of `text` (already escaped: spaces as U+2581).
pub(crate) fn encode(
    vocab: &Vocab,
    byte_tokens: &[Option<u32>; 256],
    text: &str,
    out: &mut Vec<u32>,
) -> Result<()> {
    let bytes = text.as_bytes();
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    for (start, c) in text.char_indices() {
        let n = symbols.len();
        symbols.push(Symbol {
            start,
            len: c.len_utf8(),
            prev: if n == 0 { NONE } else { n - 1 },
            next: n + 1,
        });
    }
    if let Some(last) = symbols.last_mut() {
        last.next = NONE;
    }
    let mut heap = BinaryHeap::new();
    let push = |symbols: &[Symbol], left: usize, right: usize, heap: &mut BinaryHeap<Pair>| {
        let (l, r) = (&symbols[left], &symbols[right]);
        let joined = &bytes[l.start..r.start + r.len];
        if let Some(id) = vocab.id(joined) {
            heap.push(Pair {
                score: vocab.scores[id as usize],
                left,
                right,
                size: joined.len(),
            });
        }
    };
    for i in 1..symbols.len() {
        push(&symbols, i - 1, i, &mut heap);
    }
    while let Some(p) = heap.pop() {
        let (l, r) = (&symbols[p.left], &symbols[p.right]);
        if l.len == 0 || r.len == 0 || l.len + r.len != p.size {
            continue;
        }
        let next = r.next;
        symbols[p.left].len += symbols[p.right].len;
        symbols[p.right].len = 0;
        symbols[p.left].next = next;
        if next != NONE {
            symbols[next].prev = p.left;
        }
        let prev = symbols[p.left].prev;
        if prev != NONE {
            push(&symbols, prev, p.left, &mut heap);
        }
        if next != NONE {
            push(&symbols, p.left, next, &mut heap);
        }
    }
    for s in symbols.iter().filter(|s| s.len > 0) {
        let piece = &bytes[s.start..s.start + s.len];
        match vocab.id(piece) {
            Some(id) => out.push(id),
            None => {
                for &b in piece {
                    out.push(byte_tokens[b as usize].ok_or_else(|| Error::Tokenize {
                        what: format!("no token for byte 0x{b:02X} (no <0x{b:02X}> byte token in the vocabulary)"),
                    })?);
                }
            }
        }
    }
    Ok(())
}
