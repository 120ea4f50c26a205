//! Tensor element types as ggml numbers them, with their block layouts.

use std::fmt;

/// A ggml tensor type. Ids that this build does not know are kept as [`GgmlType::Unknown`]
/// so that their tensors can still be carried through by byte range.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4,
    NVFP4,
    Q1_0,
    Q2_0,
    /// A type id this build does not know (ggml may have added it later).
    Unknown(u32),
}

/// Every known type, in id order ([`GgmlType::all`]; `from_u32` and `from_name` search it).
const KNOWN: &[GgmlType] = {
    use GgmlType::*;
    &[
        F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, IQ2_XXS,
        IQ2_XS, IQ3_XXS, IQ1_S, IQ4_NL, IQ3_S, IQ2_S, IQ4_XS, I8, I16, I32, I64, F64, IQ1_M, BF16,
        TQ1_0, TQ2_0, MXFP4, NVFP4, Q1_0, Q2_0,
    ]
};

// KNOWN is in strictly increasing id order, so no type is listed twice.
const _: () = {
    let mut i = 1;
    while i < KNOWN.len() {
        assert!(KNOWN[i - 1].to_u32() < KNOWN[i].to_u32());
        i += 1;
    }
};

/// One row of ggml's type table: id, name, elements per block, bytes per block.
type Traits = (u32, &'static str, u64, u64);

impl GgmlType {
    /// The type's row of ggml's table, as `ggml/src/ggml.c`'s `type_traits` has it (llama.cpp
    /// commit 0c1e57098, ggml 0.25.3); bytes are written as the sum of the block's fields, as
    /// gguf-py writes them. A `match` rather than a slice so that the kernels' tables can be
    /// checked against it at compile time.
    const fn traits(self) -> Option<Traits> {
        use GgmlType::*;
        Some(match self {
            F32 => (0, "F32", 1, 4),
            F16 => (1, "F16", 1, 2),
            Q4_0 => (2, "Q4_0", 32, 2 + 16),
            Q4_1 => (3, "Q4_1", 32, 2 + 2 + 16),
            Q5_0 => (6, "Q5_0", 32, 2 + 4 + 16),
            Q5_1 => (7, "Q5_1", 32, 2 + 2 + 4 + 16),
            Q8_0 => (8, "Q8_0", 32, 2 + 32),
            Q8_1 => (9, "Q8_1", 32, 4 + 32),
            Q2_K => (10, "Q2_K", 256, 2 + 2 + 16 + 64),
            Q3_K => (11, "Q3_K", 256, 2 + 12 + 64 + 32),
            Q4_K => (12, "Q4_K", 256, 2 + 2 + 12 + 128),
            Q5_K => (13, "Q5_K", 256, 2 + 2 + 12 + 32 + 128),
            Q6_K => (14, "Q6_K", 256, 2 + 16 + 128 + 64),
            Q8_K => (15, "Q8_K", 256, 4 + 256 + 32),
            IQ2_XXS => (16, "IQ2_XXS", 256, 2 + 64),
            IQ2_XS => (17, "IQ2_XS", 256, 2 + 64 + 8),
            IQ3_XXS => (18, "IQ3_XXS", 256, 2 + 96),
            IQ1_S => (19, "IQ1_S", 256, 2 + 32 + 16),
            IQ4_NL => (20, "IQ4_NL", 32, 2 + 16),
            IQ3_S => (21, "IQ3_S", 256, 2 + 64 + 8 + 32 + 4),
            IQ2_S => (22, "IQ2_S", 256, 2 + 64 + 8 + 8),
            IQ4_XS => (23, "IQ4_XS", 256, 2 + 2 + 4 + 128),
            I8 => (24, "I8", 1, 1),
            I16 => (25, "I16", 1, 2),
            I32 => (26, "I32", 1, 4),
            I64 => (27, "I64", 1, 8),
            F64 => (28, "F64", 1, 8),
            IQ1_M => (29, "IQ1_M", 256, 32 + 16 + 8),
            BF16 => (30, "BF16", 1, 2),
            TQ1_0 => (34, "TQ1_0", 256, 2 + 4 * 13),
            TQ2_0 => (35, "TQ2_0", 256, 2 + 64),
            MXFP4 => (39, "MXFP4", 32, 1 + 16),
            NVFP4 => (40, "NVFP4", 64, 4 + 32),
            Q1_0 => (41, "Q1_0", 128, 2 + 16),
            Q2_0 => (42, "Q2_0", 64, 2 + 16),
            Unknown(_) => return None,
        })
    }

    /// All known types, in id order.
    pub fn all() -> impl Iterator<Item = GgmlType> {
        KNOWN.iter().copied()
    }

    /// The type for a ggml id; unknown ids are kept, not refused.
    pub fn from_u32(id: u32) -> GgmlType {
        GgmlType::all()
            .find(|t| t.to_u32() == id)
            .unwrap_or(GgmlType::Unknown(id))
    }

    pub const fn to_u32(self) -> u32 {
        match (self, self.traits()) {
            (GgmlType::Unknown(id), _) | (_, Some((id, ..))) => id,
            (_, None) => panic!("every known type has a row"),
        }
    }

    /// The type named as llama.cpp names it (`Q4_K`, `F16`, ...), case-insensitively.
    pub fn from_name(name: &str) -> Option<GgmlType> {
        GgmlType::all().find(|t| t.traits().is_some_and(|r| r.1.eq_ignore_ascii_case(name)))
    }

    pub const fn is_known(self) -> bool {
        !matches!(self, GgmlType::Unknown(_))
    }

    /// The block size, i.e. the number of elements stored in each block (None if unknown).
    pub const fn block_size(self) -> Option<u64> {
        match self.traits() {
            Some((_, _, block, _)) => Some(block),
            None => None,
        }
    }

    /// The number of bytes of one block (None if unknown).
    pub const fn type_size(self) -> Option<u64> {
        match self.traits() {
            Some((_, _, _, size)) => Some(size),
            None => None,
        }
    }

    /// Bytes taken by `n_elements` elements, or None if the type is unknown, `n_elements` is
    /// not a multiple of the block size, or the size overflows.
    pub fn bytes_for(self, n_elements: u64) -> Option<u64> {
        let (block, size) = (self.block_size()?, self.type_size()?);
        if !n_elements.is_multiple_of(block) {
            return None;
        }
        (n_elements / block).checked_mul(size)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.traits() {
            Some(row) => f.write_str(row.1),
            None => write!(f, "type{}", self.to_u32()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_unknown_ids_are_kept() {
        for t in GgmlType::all() {
            assert_eq!(GgmlType::from_u32(t.to_u32()), t);
            assert_eq!(GgmlType::from_name(&t.to_string()), Some(t));
        }
        assert_eq!(GgmlType::from_u32(4), GgmlType::Unknown(4));
        assert_eq!(GgmlType::from_u32(4).to_u32(), 4);
        assert_eq!(GgmlType::from_u32(1000).block_size(), None);
    }

    #[test]
    fn block_layouts_match_gguf_py_constants() {
        // (block size, type size) rows from gguf-py's GGML_QUANT_SIZES.
        let expected: &[(GgmlType, u64, u64)] = &[
            (GgmlType::Q4_0, 32, 18),
            (GgmlType::Q4_1, 32, 20),
            (GgmlType::Q5_0, 32, 22),
            (GgmlType::Q5_1, 32, 24),
            (GgmlType::Q8_0, 32, 34),
            (GgmlType::Q8_1, 32, 36),
            (GgmlType::Q2_K, 256, 84),
            (GgmlType::Q3_K, 256, 110),
            (GgmlType::Q4_K, 256, 144),
            (GgmlType::Q5_K, 256, 176),
            (GgmlType::Q6_K, 256, 210),
            (GgmlType::Q8_K, 256, 292),
            (GgmlType::IQ2_XXS, 256, 66),
            (GgmlType::IQ2_XS, 256, 74),
            (GgmlType::IQ3_XXS, 256, 98),
            (GgmlType::IQ1_S, 256, 50),
            (GgmlType::IQ4_NL, 32, 18),
            (GgmlType::IQ3_S, 256, 110),
            (GgmlType::IQ2_S, 256, 82),
            (GgmlType::IQ4_XS, 256, 136),
            (GgmlType::IQ1_M, 256, 56),
            (GgmlType::TQ1_0, 256, 54),
            (GgmlType::TQ2_0, 256, 66),
            (GgmlType::MXFP4, 32, 17),
        ];
        for &(t, block, size) in expected {
            assert_eq!(
                (t.block_size(), t.type_size()),
                (Some(block), Some(size)),
                "{t}"
            );
        }
        assert_eq!(GgmlType::Q4_K.bytes_for(576), None);
        assert_eq!(GgmlType::Q5_0.bytes_for(576), Some(18 * 22));
    }
}
