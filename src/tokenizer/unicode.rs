//! Code point classes as llama.cpp's pre-tokenizers see them.
//!
//! llama.cpp reduces the Unicode general category to one class per code point (letter, number,
//! mark, punctuation, symbol, separator, control, undefined) plus a White_Space bit; its split
//! rules test only these. The classes here come from the `unicode-general-category` tables and
//! `char::is_whitespace` (the White_Space property, the same 25 code points llama.cpp lists).
//! Code points assigned in a newer Unicode version than either table knows could be classed
//! differently; ordinary text never meets that.

use unicode_general_category::{get_general_category, GeneralCategory as G};

/// The single category llama.cpp keeps for a code point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Unassigned (Cn).
    Undefined,
    Number,
    Letter,
    /// Zs, Zl, Zp.
    Separator,
    Mark,
    Punctuation,
    Symbol,
    /// Cc, Cf, Co, Cs.
    Control,
}

/// What the split rules ask about one position of the text. `valid` is false past the end of
/// the current piece, where every test fails (llama.cpp's all-zero flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    pub valid: bool,
    pub class: Class,
    pub whitespace: bool,
}

impl Flags {
    /// The flags of a position outside the piece being split.
    pub const OUTSIDE: Flags = Flags {
        valid: false,
        class: Class::Undefined,
        whitespace: false,
    };

    pub fn letter(self) -> bool {
        self.valid && self.class == Class::Letter
    }

    pub fn number(self) -> bool {
        self.valid && self.class == Class::Number
    }

    pub fn mark(self) -> bool {
        self.valid && self.class == Class::Mark
    }

    pub fn space(self) -> bool {
        self.valid && self.whitespace
    }
}

pub fn class_of(c: char) -> Class {
    match get_general_category(c) {
        G::UppercaseLetter
        | G::LowercaseLetter
        | G::TitlecaseLetter
        | G::ModifierLetter
        | G::OtherLetter => Class::Letter,
        G::NonspacingMark | G::SpacingMark | G::EnclosingMark => Class::Mark,
        G::DecimalNumber | G::LetterNumber | G::OtherNumber => Class::Number,
        G::ConnectorPunctuation
        | G::DashPunctuation
        | G::OpenPunctuation
        | G::ClosePunctuation
        | G::InitialPunctuation
        | G::FinalPunctuation
        | G::OtherPunctuation => Class::Punctuation,
        G::MathSymbol | G::CurrencySymbol | G::ModifierSymbol | G::OtherSymbol => Class::Symbol,
        G::SpaceSeparator | G::LineSeparator | G::ParagraphSeparator => Class::Separator,
        G::Control | G::Format | G::Surrogate | G::PrivateUse => Class::Control,
        // Unassigned, and any category a later version of the table adds.
        _ => Class::Undefined,
    }
}

pub fn flags_of(c: char) -> Flags {
    Flags {
        valid: true,
        class: class_of(c),
        whitespace: c.is_whitespace(),
    }
}

/// Simple lower-case mapping (first code point of the full mapping).
pub fn to_lower(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}

/// GPT-2's reversible byte-to-character map used by byte-level BPE: printable Latin-1 bytes
/// stand for themselves, the other 68 bytes take the code points 256, 257, ... in byte order.
pub fn byte_chars() -> [char; 256] {
    let printable = |b: u32| {
        (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
    };
    let mut out = ['\0'; 256];
    let mut next = 256u32;
    for (b, slot) in out.iter_mut().enumerate() {
        let b = b as u32;
        let cp = if printable(b) {
            b
        } else {
            next += 1;
            next - 1
        };
        *slot = char::from_u32(cp).unwrap_or('\u{FFFD}');
    }
    out
}

/// The one character that stands for `c` when a split rule written with `\p{..}` classes runs
/// as an ordinary regex: ASCII stays itself, other white space becomes U+000B, and every other
/// code point becomes a private-use stand-in for its class (the trick llama.cpp uses so that
/// `std::regex` can evaluate Unicode classes).
pub fn collapsed(c: char) -> char {
    if c.is_ascii() {
        return c;
    }
    if c.is_whitespace() {
        return '\u{0B}';
    }
    match class_of(c) {
        Class::Number => STAND_IN_NUMBER,
        Class::Letter => STAND_IN_LETTER,
        Class::Punctuation => STAND_IN_PUNCT,
        Class::Mark => STAND_IN_MARK,
        Class::Symbol => STAND_IN_SYMBOL,
        _ => STAND_IN_OTHER,
    }
}

pub const STAND_IN_OTHER: char = '\u{E0D0}';
pub const STAND_IN_NUMBER: char = '\u{E0D1}';
pub const STAND_IN_LETTER: char = '\u{E0D2}';
pub const STAND_IN_PUNCT: char = '\u{E0D3}';
pub const STAND_IN_MARK: char = '\u{E0D4}';
pub const STAND_IN_SYMBOL: char = '\u{E0D5}';

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_map_is_gpt2s() {
        let m = byte_chars();
        assert_eq!(m[b'!' as usize], '!');
        assert_eq!(m[b' ' as usize], '\u{120}'); // "Ġ"
        assert_eq!(m[b'\n' as usize], '\u{10A}'); // "Ċ"
        assert_eq!(m[0xAD], '\u{143}');
        let mut all: Vec<char> = m.to_vec();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 256);
    }

    #[test]
    fn classes() {
        assert_eq!(class_of('a'), Class::Letter);
        assert_eq!(class_of('7'), Class::Number);
        assert_eq!(class_of('²'), Class::Number);
        assert_eq!(class_of('\u{301}'), Class::Mark);
        assert_eq!(class_of('$'), Class::Symbol);
        assert_eq!(class_of('—'), Class::Punctuation);
        assert!(flags_of('\u{3000}').whitespace);
        assert!(!flags_of('\u{200B}').whitespace);
        assert_eq!(collapsed('é'), STAND_IN_LETTER);
        assert_eq!(collapsed('\u{A0}'), '\u{0B}');
    }
}
