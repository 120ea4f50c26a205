//! The healing methods: four fits that fold into the weights with no runtime cost, and the
//! per-run choice among them (the default).

/// How a removed run is healed (module docs of [`super`] for each fit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealMethod {
    /// Fit every method below and keep, per run, the least-squares map if it lowers the
    /// held-back error, else the method with the lowest held-back error that lowers it.
    #[default]
    Auto,
    /// ReplaceMe's least-squares map (ridge toward the identity).
    Lstsq,
    /// ReplaceMe's cosine-distance variant: the map minimising the cosine distance between the
    /// healed stream and the target, refined from the least-squares map.
    Cosine,
    /// LinearPatch-style: a Hadamard rotation and per-channel scales, fused into one map.
    Patch,
    /// Prune&Comp-style magnitude compensation: the stream at the cut rescaled to the magnitude
    /// the removed blocks would have left, folded into the writes of the blocks after it.
    Comp,
}

impl HealMethod {
    /// Every method, by its name.
    pub const ALL: [HealMethod; 5] = [
        HealMethod::Auto,
        HealMethod::Lstsq,
        HealMethod::Cosine,
        HealMethod::Patch,
        HealMethod::Comp,
    ];

    /// The name the command line and the report use.
    pub fn name(self) -> &'static str {
        match self {
            HealMethod::Auto => "auto",
            HealMethod::Lstsq => "lstsq",
            HealMethod::Cosine => "cosine",
            HealMethod::Patch => "patch",
            HealMethod::Comp => "comp",
        }
    }

    /// The method named `name`, if there is one.
    pub fn from_name(name: &str) -> Option<HealMethod> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The fits tried for this method, in the order ties are broken (the first wins).
    pub(super) fn candidates(self) -> &'static [HealMethod] {
        match self {
            HealMethod::Auto => &Self::ALL[1..],
            HealMethod::Lstsq => &Self::ALL[1..2],
            HealMethod::Cosine => &Self::ALL[2..3],
            HealMethod::Patch => &Self::ALL[3..4],
            HealMethod::Comp => &Self::ALL[4..5],
        }
    }
}

impl std::fmt::Display for HealMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_candidates() {
        for m in HealMethod::ALL {
            assert_eq!(HealMethod::from_name(m.name()), Some(m));
        }
        assert_eq!(HealMethod::from_name("ls"), None);
        assert_eq!(HealMethod::Auto.candidates().len(), 4);
        for m in &HealMethod::ALL[1..] {
            assert_eq!(m.candidates(), &[*m]);
        }
    }
}
