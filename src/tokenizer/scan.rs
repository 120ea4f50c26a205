//! The scanners llama.cpp hand-writes for the common pre-tokenizer regexes (GPT-2's, the Llama 3
//! family's, the newline split), reproduced with their departures from the regexes: words end at
//! piece ends, and `\s+(?!\S)` never looks past one. Each takes the text as code points, their
//! Unicode flags and the lengths of the pieces so far, and returns the lengths of the words.

use super::unicode::{self, Flags};

/// One piece of the text at a time: `ini..end` in code points.
pub(super) fn pieces(lengths: &[usize]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut start = 0;
    lengths.iter().map(move |&len| {
        let r = (start, start + len);
        start += len;
        r
    })
}

/// Collects word lengths inside one piece.
struct Cutter<'a> {
    out: &'a mut Vec<usize>,
    prev_end: usize,
}

impl Cutter<'_> {
    /// Ends a word at `end`; returns its length (0 when empty, and nothing is recorded).
    fn cut(&mut self, end: usize) -> usize {
        let len = end - self.prev_end;
        if len > 0 {
            self.out.push(len);
        }
        self.prev_end = end;
        len
    }
}

/// The length (2 or 3) of the contraction `'s|'t|'m|'d|'re|'ve|'ll` starting at `pos`, if one
/// ends by `end`; `fold_case` matches upper case letters too (Llama 3's `(?i:...)`).
fn contraction_at(cpts: &[char], pos: usize, end: usize, fold_case: bool) -> Option<usize> {
    if cpts[pos] != '\'' || pos + 1 >= end {
        return None;
    }
    let low = |c: char| if fold_case { unicode::to_lower(c) } else { c };
    let n = low(cpts[pos + 1]);
    if matches!(n, 's' | 't' | 'm' | 'd') {
        return Some(2);
    }
    if pos + 2 < end
        && matches!(
            (n, low(cpts[pos + 2])),
            ('r', 'e') | ('v', 'e') | ('l', 'l')
        )
    {
        return Some(3);
    }
    None
}

/// Where the last rules of both scanners end the word at `pos`, given the `n_ws` spaces that
/// start there: `\s+(?!\S)` leaves the last space to the next word when text follows, `\s+`
/// takes them all at the end of the piece, and otherwise one code point stands alone.
fn after_spaces(pos: usize, n_ws: usize, end: usize) -> usize {
    if n_ws > 1 && pos + n_ws < end {
        pos + n_ws - 1
    } else if n_ws > 0 {
        pos + n_ws
    } else {
        pos + 1
    }
}

/// GPT-2's split as llama.cpp's scanner does it.
pub(super) fn split_gpt2(cpts: &[char], flags: &[Flags], lengths: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(lengths.len());
    for (ini, end) in pieces(lengths) {
        let fl = |p: usize| if p < end { flags[p] } else { Flags::OUTSIDE };
        let mut w = Cutter {
            out: &mut out,
            prev_end: ini,
        };
        let mut pos = ini;
        while pos < end {
            let c = cpts[pos];
            let f = flags[pos];
            if let Some(n) = contraction_at(cpts, pos, end, false) {
                pos += w.cut(pos + n);
                continue;
            }
            let space = usize::from(c == ' ');
            let mut f2 = if c == ' ' { fl(pos + 1) } else { f };
            if f2.letter() {
                pos += space;
                while f2.letter() {
                    pos += 1;
                    f2 = fl(pos);
                }
                w.cut(pos);
                continue;
            }
            if f2.number() {
                pos += space;
                while f2.number() {
                    pos += 1;
                    f2 = fl(pos);
                }
                w.cut(pos);
                continue;
            }
            let other = |f: Flags| f.valid && !(f.whitespace || f.letter() || f.number());
            if other(f2) {
                pos += space;
                while other(f2) {
                    pos += 1;
                    f2 = fl(pos);
                }
                w.cut(pos);
                continue;
            }
            let mut n_ws = 0;
            while fl(pos + n_ws).space() {
                n_ws += 1;
            }
            pos = after_spaces(pos, n_ws, end);
            w.cut(pos);
        }
    }
    out
}

/// Llama 3's split (and Qwen2's with `max_digits` 1, Qwen3.5's with `marks`) as llama.cpp's
/// scanner does it. A little over 80 lines on purpose: one loop with a branch per alternative of
/// the regex, in the scanner's order, so that it can be read beside llama.cpp's.
pub(super) fn split_llama3(
    cpts: &[char],
    flags: &[Flags],
    lengths: &[usize],
    max_digits: usize,
    marks: bool,
) -> Vec<usize> {
    let mut out = Vec::with_capacity(lengths.len());
    for (ini, end) in pieces(lengths) {
        let get = |p: usize| if p < end { Some(cpts[p]) } else { None };
        let fl = |p: usize| if p < end { flags[p] } else { Flags::OUTSIDE };
        let wordy = |f: Flags| f.letter() || (marks && f.mark());
        let mut w = Cutter {
            out: &mut out,
            prev_end: ini,
        };
        let mut pos = ini;
        while pos < end {
            let c = cpts[pos];
            let f = flags[pos];
            if let Some(n) = contraction_at(cpts, pos, end, true) {
                pos += w.cut(pos + n);
                continue;
            }
            // [^\r\n\p{L}\p{N}]?\p{L}+
            if !(c == '\r' || c == '\n' || f.number()) && (wordy(f) || wordy(fl(pos + 1))) {
                pos += 1;
                while wordy(fl(pos)) {
                    pos += 1;
                }
                w.cut(pos);
                continue;
            }
            // \p{N}{1,max_digits}
            if f.number() {
                let mut group = pos;
                while fl(pos).number() {
                    pos += 1;
                    if pos - group >= max_digits {
                        w.cut(pos);
                        group = pos;
                    }
                }
                w.cut(pos);
                continue;
            }
            // <space>?[^\s\p{L}\p{N}]+[\r\n]*
            let mut f2 = if c == ' ' { fl(pos + 1) } else { f };
            let other =
                |f: Flags| !(f.whitespace || f.letter() || f.number() || (marks && f.mark()));
            if other(f2) && f.valid {
                pos += usize::from(c == ' ');
                while other(f2) && f2.valid {
                    pos += 1;
                    f2 = fl(pos);
                }
                while matches!(get(pos), Some('\r' | '\n')) {
                    pos += 1;
                }
                w.cut(pos);
                continue;
            }
            let mut n_ws = 0;
            let mut last_newline_end = 0;
            while fl(pos + n_ws).space() {
                if matches!(get(pos + n_ws), Some('\r' | '\n')) {
                    last_newline_end = pos + n_ws + 1;
                }
                n_ws += 1;
            }
            // \s*[\r\n]+
            if last_newline_end > 0 {
                pos = last_newline_end;
                w.cut(pos);
                continue;
            }
            pos = after_spaces(pos, n_ws, end);
            w.cut(pos);
        }
    }
    out
}

/// `[^\n]+|[\n]+`: runs of newlines and runs of everything else.
pub(super) fn split_newlines(cpts: &[char], lengths: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(lengths.len());
    for (ini, end) in pieces(lengths) {
        let mut pos = ini;
        while pos < end {
            let newline = cpts[pos] == '\n';
            let start = pos;
            while pos < end && (cpts[pos] == '\n') == newline {
                pos += 1;
            }
            out.push(pos - start);
        }
    }
    out
}
