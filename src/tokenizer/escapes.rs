//! The text llama.cpp's tools tokenize when given a file: one trailing newline removed and
//! escape sequences processed (`string_process_escapes`).

/// The text llama.cpp's tools (llama-perplexity, llama-imatrix, llama-completion) tokenize when
/// given `-f FILE`: the file with one trailing newline removed, then escape sequences processed
/// (their `--escape` is on by default). llama-perplexity tokenizes it with `add_special` true and
/// `parse_special` false, that is [`Tokenizer::encode`]`(&prompt_from_file(..), true)`.
/// (`llama-tokenize -f` differs: it keeps the trailing newline.)
pub fn prompt_from_file(contents: &str) -> String {
    process_escapes(contents.strip_suffix('\n').unwrap_or(contents))
}

/// llama.cpp's `string_process_escapes`: `\n`, `\r`, `\t`, `\'`, `\"`, `\\` and `\xHH` are
/// replaced; any other backslash pair is kept as it is. A `\x` byte that is not valid UTF-8
/// becomes U+FFFD here (llama.cpp would pass the raw byte on).
pub fn process_escapes(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 >= b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        i += 1;
        let c = b[i];
        let simple = match c {
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'\'' | b'"' | b'\\' => Some(c),
            _ => None,
        };
        if let Some(s) = simple {
            out.push(s);
        } else if let Some(v) = (c == b'x' && i + 2 < b.len())
            .then(|| hex_pair(b[i + 1], b[i + 2]))
            .flatten()
        {
            out.push(v);
            i += 2;
        } else {
            out.push(b'\\');
            out.push(c);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Two characters as C's `strtol(.., 16)` reads them when it must consume both: two hex
/// digits, or a leading space or sign and one hex digit.
fn hex_pair(a: u8, b: u8) -> Option<u8> {
    let digit = |x: u8| (x as char).to_digit(16).map(|d| d as u8);
    match (a, digit(a), digit(b)) {
        (_, Some(h), Some(l)) => Some(h * 16 + l),
        (b'+', _, Some(l)) => Some(l),
        (b'-', _, Some(l)) => Some(l.wrapping_neg()),
        (a, _, Some(l)) if c_isspace(a) => Some(l),
        _ => None,
    }
}

/// C's `isspace` in the "C" locale.
pub(super) fn c_isspace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}
