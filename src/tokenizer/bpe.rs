//! Byte-level BPE as llama.cpp's `llm_tokenizer_bpe_session` runs it: each pre-tokenized word
//! is spelled in GPT-2's byte alphabet, then the adjacent pair with the lowest merge rank is
//! merged (leftmost first on ties) until no listed merge applies.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::pre::PreTokenizer;
use super::unicode;
use super::Vocab;
use crate::error::Result;

/// No symbol (end of the chain).
const NONE: usize = usize::MAX;

pub(crate) struct Bpe {
    pre: PreTokenizer,
    ignore_merges: bool,
    /// Every string that is a token or one side of a merge, numbered.
    pieces: HashMap<Vec<u8>, u32>,
    /// The token whose text is each piece, if any.
    piece_token: Vec<Option<u32>>,
    /// (left piece, right piece) -> (rank, piece of the merged string if it is one).
    ranks: HashMap<(u32, u32), (u32, Option<u32>)>,
    /// GPT-2's character for each byte, and that character's piece.
    byte_char: [char; 256],
    byte_piece: [Option<u32>; 256],
    /// Tokens whose text is exactly one byte: the fallback for a symbol that is no token.
    single_byte_token: [Option<u32>; 256],
    /// GPT-2 character back to its byte, for decoding.
    char_byte: HashMap<char, u8>,
}

struct Symbol {
    start: usize,
    len: usize,
    piece: Option<u32>,
    prev: usize,
    next: usize,
}

impl Bpe {
    /// `merges` are `tokenizer.ggml.merges` strings, "left right", rank = position. A string
    /// with no space after its first byte is ignored, and the first of duplicate pairs keeps its
    /// rank, as in llama.cpp.
    pub fn new(vocab: &Vocab, pre: PreTokenizer, ignore_merges: bool, merges: &[Vec<u8>]) -> Bpe {
        let mut pieces: HashMap<Vec<u8>, u32> = HashMap::with_capacity(vocab.texts.len() * 2);
        let intern = |s: &[u8], pieces: &mut HashMap<Vec<u8>, u32>| -> u32 {
            if let Some(&p) = pieces.get(s) {
                return p;
            }
            let p = pieces.len() as u32;
            pieces.insert(s.to_vec(), p);
            p
        };
        for t in &vocab.texts {
            intern(t, &mut pieces);
        }
        let split = |m: &[u8]| -> Option<(usize, usize)> {
            let at = m.iter().skip(1).position(|&b| b == b' ')? + 1;
            (at > 0 && at + 1 < m.len()).then_some((at, at + 1))
        };
        for m in merges {
            if let Some((l_end, r_start)) = split(m) {
                intern(&m[..l_end], &mut pieces);
                intern(&m[r_start..], &mut pieces);
            }
        }
        let mut ranks = HashMap::with_capacity(merges.len());
        let mut joined = Vec::new();
        for (rank, m) in merges.iter().enumerate() {
            let Some((l_end, r_start)) = split(m) else {
                continue;
            };
            let (l, r) = (pieces[&m[..l_end]], pieces[&m[r_start..]]);
            joined.clear();
            joined.extend_from_slice(&m[..l_end]);
            joined.extend_from_slice(&m[r_start..]);
            let merged = pieces.get(joined.as_slice()).copied();
            ranks.entry((l, r)).or_insert((rank as u32, merged));
        }
        let mut piece_token = vec![None; pieces.len()];
        for (text, &p) in &pieces {
            piece_token[p as usize] = vocab.id(text);
        }
        let byte_char = unicode::byte_chars();
        let mut byte_piece = [None; 256];
        let mut single_byte_token = [None; 256];
        let mut char_byte = HashMap::with_capacity(256);
        let mut buf = [0u8; 4];
        for b in 0..256 {
            let s = byte_char[b].encode_utf8(&mut buf);
            byte_piece[b] = pieces.get(s.as_bytes()).copied();
            single_byte_token[b] = vocab.id(&[b as u8]);
            char_byte.insert(byte_char[b], b as u8);
        }
        Bpe {
            pre,
            ignore_merges,
            pieces,
            piece_token,
            ranks,
            byte_char,
            byte_piece,
            single_byte_token,
            char_byte,
        }
    }

    /// Appends the ids of one text piece (special tokens already cut out).
    pub fn encode(&self, vocab: &Vocab, text: &str, out: &mut Vec<u32>) -> Result<()> {
        let mut enc = String::new();
        let mut symbols = Vec::new();
        let mut heap = BinaryHeap::new();
        for word in self.pre.split(text)? {
            let word = &text.as_bytes()[word];
            enc.clear();
            symbols.clear();
            heap.clear();
            for &b in word {
                let start = enc.len();
                enc.push(self.byte_char[b as usize]);
                let n = symbols.len();
                symbols.push(Symbol {
                    start,
                    len: enc.len() - start,
                    piece: self.byte_piece[b as usize],
                    prev: if n == 0 { NONE } else { n - 1 },
                    next: if n + 1 == word.len() { NONE } else { n + 1 },
                });
            }
            if self.ignore_merges {
                if let Some(id) = vocab.id(enc.as_bytes()) {
                    out.push(id);
                    continue;
                }
            }
            for i in 1..symbols.len() {
                self.push_pair(&symbols, i - 1, i, &mut heap);
            }
            while let Some((Reverse(_), Reverse(left), right, size)) = heap.pop() {
                let (l, r) = (&symbols[left], &symbols[right]);
                // Stale: one side was merged since (symbols only grow, so sizes tell).
                if l.len == 0 || r.len == 0 || l.len + r.len != size {
                    continue;
                }
                let merged = match (l.piece, r.piece) {
                    (Some(a), Some(b)) => self.ranks.get(&(a, b)).and_then(|&(_, m)| m),
                    _ => None,
                };
                let next = r.next;
                symbols[left].len += symbols[right].len;
                symbols[left].piece = merged;
                symbols[left].next = next;
                symbols[right].len = 0;
                if next != NONE {
                    symbols[next].prev = left;
                }
                let prev = symbols[left].prev;
                if prev != NONE {
                    self.push_pair(&symbols, prev, left, &mut heap);
                }
                if next != NONE {
                    self.push_pair(&symbols, left, next, &mut heap);
                }
            }
            for s in symbols.iter().filter(|s| s.len > 0) {
                match s.piece.and_then(|p| self.piece_token[p as usize]) {
                    Some(id) => out.push(id),
                    None => {
                        let bytes = &enc.as_bytes()[s.start..s.start + s.len];
                        out.extend(
                            bytes
                                .iter()
                                .filter_map(|&b| self.single_byte_token[b as usize]),
                        );
                    }
                }
            }
        }
        Ok(())
    }

    #[allow(clippy::type_complexity)]
    fn push_pair(
        &self,
        symbols: &[Symbol],
        left: usize,
        right: usize,
        heap: &mut BinaryHeap<(Reverse<u32>, Reverse<usize>, usize, usize)>,
    ) {
        let (l, r) = (&symbols[left], &symbols[right]);
        if let (Some(a), Some(b)) = (l.piece, r.piece) {
            if let Some(&(rank, _)) = self.ranks.get(&(a, b)) {
                heap.push((Reverse(rank), Reverse(left), right, l.len + r.len));
            }
        }
    }

    /// Appends the bytes a normal token stands for (its text is in GPT-2's byte alphabet).
    pub fn decode_piece(&self, text: &[u8], out: &mut Vec<u8>) {
        let s = String::from_utf8_lossy(text);
        let mut buf = [0u8; 4];
        for c in s.chars() {
            match self.char_byte.get(&c) {
                Some(&b) => out.push(b),
                None => out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()),
            }
        }
    }

    /// Number of distinct strings among tokens and merge sides (for diagnostics).
    #[allow(dead_code)]
    pub fn piece_count(&self) -> usize {
        self.pieces.len()
    }
}
