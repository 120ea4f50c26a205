//! llama.cpp's file types (`llama_ftype`) as llama-quantize names and numbers them: the types
//! this build makes ([`FILE_TYPES`]) and every name llama-quantize accepts
//! ([`LLAMA_QUANTIZE_NAMES`]), so that a name it knows but this build cannot make is told apart
//! from a name nobody knows.

use crate::gguf::GgmlType;

/// A llama.cpp file type (`llama_ftype`): a default tensor type plus, for the K mixes, rules
/// that give some tensors more bits.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q2_K_S,
    Q3_K_S,
    Q3_K_M,
    Q3_K_L,
    Q4_K_S,
    Q4_K_M,
    Q5_K_S,
    Q5_K_M,
    Q6_K,
}

/// (file type, name as llama-quantize spells it, `llama_ftype` number, default tensor type).
const FILE_TYPES: &[(FileType, &str, u32, GgmlType)] = &[
    (FileType::F32, "F32", 0, GgmlType::F32),
    (FileType::F16, "F16", 1, GgmlType::F16),
    (FileType::Q4_0, "Q4_0", 2, GgmlType::Q4_0),
    (FileType::Q4_1, "Q4_1", 3, GgmlType::Q4_1),
    (FileType::Q8_0, "Q8_0", 7, GgmlType::Q8_0),
    (FileType::Q5_0, "Q5_0", 8, GgmlType::Q5_0),
    (FileType::Q5_1, "Q5_1", 9, GgmlType::Q5_1),
    (FileType::Q2_K, "Q2_K", 10, GgmlType::Q2_K),
    (FileType::Q3_K_S, "Q3_K_S", 11, GgmlType::Q3_K),
    (FileType::Q3_K_M, "Q3_K_M", 12, GgmlType::Q3_K),
    (FileType::Q3_K_L, "Q3_K_L", 13, GgmlType::Q3_K),
    (FileType::Q4_K_S, "Q4_K_S", 14, GgmlType::Q4_K),
    (FileType::Q4_K_M, "Q4_K_M", 15, GgmlType::Q4_K),
    (FileType::Q5_K_S, "Q5_K_S", 16, GgmlType::Q5_K),
    (FileType::Q5_K_M, "Q5_K_M", 17, GgmlType::Q5_K),
    (FileType::Q6_K, "Q6_K", 18, GgmlType::Q6_K),
    (FileType::Q2_K_S, "Q2_K_S", 21, GgmlType::Q2_K),
    (FileType::BF16, "BF16", 32, GgmlType::BF16),
];

impl FileType {
    fn row(self) -> &'static (FileType, &'static str, u32, GgmlType) {
        FILE_TYPES
            .iter()
            .find(|r| r.0 == self)
            .expect("every file type is in FILE_TYPES")
    }

    /// All supported file types.
    pub fn all() -> impl Iterator<Item = FileType> {
        FILE_TYPES.iter().map(|r| r.0)
    }

    /// Parses a name as llama-quantize accepts it (`q4_k_m`, `Q8_0`, the alias `Q4_K`, or the
    /// number `15`); `None` for a name it accepts that this build cannot produce, or does not
    /// know. [`FileType::parse`] tells the two apart.
    pub fn from_name(name: &str) -> Option<FileType> {
        FileType::parse(name).ok()
    }

    /// Parses a file type the way llama-quantize's `try_parse_ftype` does: a name from its list,
    /// any case, else a leading decimal number (`std::stoi`) taken as a `llama_ftype`, the first
    /// name in the list with that number winning.
    pub fn parse(name: &str) -> Result<FileType, FileTypeError> {
        let row = LLAMA_QUANTIZE_NAMES
            .iter()
            .find(|r| r.0.eq_ignore_ascii_case(name))
            .or_else(|| {
                let n = stoi(name)?;
                LLAMA_QUANTIZE_NAMES.iter().find(|r| r.1 == Some(n))
            })
            .ok_or_else(|| FileTypeError::Unknown(name.to_string()))?;
        let number = row.1.ok_or(FileTypeError::NotBuilt(row.0))?;
        FILE_TYPES
            .iter()
            .find(|r| r.2 == number)
            .map(|r| r.0)
            .ok_or(FileTypeError::NotBuilt(row.0))
    }

    pub fn name(self) -> &'static str {
        self.row().1
    }

    /// The value llama-quantize writes to `general.file_type`.
    pub fn llama_ftype(self) -> u32 {
        self.row().2
    }

    /// The type most tensors get.
    pub fn default_type(self) -> GgmlType {
        self.row().3
    }
}

/// Why a file type name was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileTypeError {
    /// Occurs when llama-quantize would not accept the name either.
    #[error("unknown file type {0:?}; one of {names}", names = supported_names())]
    Unknown(String),
    /// Occurs for a type llama-quantize produces that this build has no kernel or mix for.
    #[error("file type {0} is one llama-quantize makes, but this build cannot (it makes {names}); use llama-quantize for {0}", names = supported_names())]
    NotBuilt(&'static str),
}

fn supported_names() -> String {
    let names: Vec<&str> = FileType::all().map(|f| f.name()).collect();
    names.join(", ")
}

/// `std::stoi` as llama-quantize calls it: optional leading white space and sign, then at least
/// one decimal digit; whatever follows the digits is ignored.
fn stoi(s: &str) -> Option<u32> {
    let t = s.trim_start();
    let t = t.strip_prefix('+').unwrap_or(t);
    let digits: &str = &t[..t.bytes().take_while(u8::is_ascii_digit).count()];
    digits.parse().ok()
}

/// Every name llama-quantize's `--help` lists (tools/quantize/quantize.cpp, `QUANT_OPTIONS`), in
/// its order, with the `llama_ftype` number it maps to: `Q3_K`, `Q4_K` and `Q5_K` are aliases
/// of the `_M` mixes, and `COPY` (copy every tensor unchanged) has no number of its own. The
/// order matters: a number resolves to the first name that has it.
const LLAMA_QUANTIZE_NAMES: &[(&str, Option<u32>)] = &[
    ("Q1_0", Some(40)),
    ("Q2_0", Some(41)),
    ("Q4_0", Some(2)),
    ("Q4_1", Some(3)),
    ("MXFP4_MOE", Some(38)),
    ("Q5_0", Some(8)),
    ("Q5_1", Some(9)),
    ("IQ2_XXS", Some(19)),
    ("IQ2_XS", Some(20)),
    ("IQ2_S", Some(28)),
    ("IQ2_M", Some(29)),
    ("IQ1_S", Some(24)),
    ("IQ1_M", Some(31)),
    ("TQ1_0", Some(36)),
    ("TQ2_0", Some(37)),
    ("Q2_K", Some(10)),
    ("Q2_K_S", Some(21)),
    ("IQ3_XXS", Some(23)),
    ("IQ3_S", Some(26)),
    ("IQ3_M", Some(27)),
    ("Q3_K", Some(12)),
    ("IQ3_XS", Some(22)),
    ("Q3_K_S", Some(11)),
    ("Q3_K_M", Some(12)),
    ("Q3_K_L", Some(13)),
    ("IQ4_NL", Some(25)),
    ("IQ4_XS", Some(30)),
    ("Q4_K", Some(15)),
    ("Q4_K_S", Some(14)),
    ("Q4_K_M", Some(15)),
    ("Q5_K", Some(17)),
    ("Q5_K_S", Some(16)),
    ("Q5_K_M", Some(17)),
    ("Q6_K", Some(18)),
    ("Q8_0", Some(7)),
    ("F16", Some(1)),
    ("BF16", Some(32)),
    ("F32", Some(0)),
    ("COPY", None),
];

/// The names llama-quantize accepts, in its `--help` order, with their `llama_ftype` numbers
/// (`None` for `COPY`), and whether this build makes that type.
pub fn llama_quantize_names() -> impl Iterator<Item = (&'static str, Option<u32>, bool)> {
    LLAMA_QUANTIZE_NAMES
        .iter()
        .map(|&(name, n)| (name, n, FileType::parse(name).is_ok()))
}

impl std::fmt::Display for FileType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_type_names_and_numbers() {
        assert_eq!(FileType::from_name("q4_k_m"), Some(FileType::Q4_K_M));
        assert_eq!(FileType::from_name("15"), Some(FileType::Q4_K_M));
        assert_eq!(FileType::Q8_0.llama_ftype(), 7);
        assert_eq!(FileType::from_name("IQ2_XXS"), None);
        assert_eq!(
            FileType::parse("IQ2_XXS"),
            Err(FileTypeError::NotBuilt("IQ2_XXS"))
        );
        assert_eq!(
            FileType::parse("Q4_L"),
            Err(FileTypeError::Unknown("Q4_L".into()))
        );
        // llama-quantize's aliases and its std::stoi reading of numbers
        assert_eq!(FileType::parse("q4_k"), Ok(FileType::Q4_K_M));
        assert_eq!(FileType::parse("Q3_K"), Ok(FileType::Q3_K_M));
        assert_eq!(FileType::parse("Q5_K"), Ok(FileType::Q5_K_M));
        assert_eq!(FileType::parse(" 15x"), Ok(FileType::Q4_K_M));
        assert_eq!(FileType::parse("0"), Ok(FileType::F32));
        assert_eq!(
            FileType::parse("COPY"),
            Err(FileTypeError::NotBuilt("COPY"))
        );
        // every file type this build makes is in llama-quantize's list under its own name
        for f in FileType::all() {
            assert_eq!(FileType::parse(f.name()), Ok(f));
            assert_eq!(FileType::parse(&f.llama_ftype().to_string()), Ok(f));
        }
    }
}
