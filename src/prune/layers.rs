//! Layer lists: parsing `20,21,22` / `12-15`, and checking them against a model's depth.

use crate::error::{Error, Result};

/// Which of a model's blocks are removed and which are kept, both as sorted original indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunePlan {
    pub n_layers: usize,
    pub removed: Vec<usize>,
    pub kept: Vec<usize>,
}

impl PrunePlan {
    /// Checks `removed` against a model with `n_layers` blocks: non-empty, no duplicates, in
    /// range, and at least one block left.
    pub fn new(n_layers: usize, removed: &[usize]) -> Result<PrunePlan> {
        if removed.is_empty() {
            return Err(Error::Layers("no layers given".into()));
        }
        let mut sorted = removed.to_vec();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::Layers(format!("layer {} is listed twice", w[0])));
        }
        if let Some(&bad) = sorted.iter().find(|&&i| i >= n_layers) {
            return Err(Error::Layers(format!(
                "layer {bad} is out of range: the model has {n_layers} layers (0-{})",
                n_layers.saturating_sub(1)
            )));
        }
        if sorted.len() == n_layers {
            return Err(Error::Layers(format!(
                "removing all {n_layers} layers would leave an empty model"
            )));
        }
        let kept = (0..n_layers)
            .filter(|i| sorted.binary_search(i).is_err())
            .collect();
        Ok(PrunePlan {
            n_layers,
            removed: sorted,
            kept,
        })
    }

    /// New index of original block `i`, or None if it is removed.
    pub fn new_index(&self, i: usize) -> Option<usize> {
        self.kept.binary_search(&i).ok()
    }
}

/// Parses a layer list: comma-separated indices and inclusive ranges, e.g. `3,12-17,25`.
pub fn parse_layer_list(text: &str) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err(Error::Layers(format!("empty entry in {text:?}")));
        }
        let number = |s: &str| -> Result<usize> {
            s.trim()
                .parse::<usize>()
                .map_err(|_| Error::Layers(format!("{s:?} in {text:?} is not a layer index")))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (number(a)?, number(b)?);
                if a > b {
                    return Err(Error::Layers(format!("range {part:?} runs backwards")));
                }
                if b - a >= 1 << 20 {
                    return Err(Error::Layers(format!("range {part:?} is implausibly long")));
                }
                out.extend(a..=b);
            }
            None => out.push(number(part)?),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_indices_and_ranges() {
        assert_eq!(parse_layer_list("20,21,22").unwrap(), vec![20, 21, 22]);
        assert_eq!(
            parse_layer_list("3, 12-14 ,25").unwrap(),
            vec![3, 12, 13, 14, 25]
        );
        for bad in ["", "1,,2", "a", "3-1", "-1", "1-", "0-99999999"] {
            assert!(parse_layer_list(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn plans_are_checked() {
        let p = PrunePlan::new(6, &[4, 1]).unwrap();
        assert_eq!(p.removed, vec![1, 4]);
        assert_eq!(p.kept, vec![0, 2, 3, 5]);
        assert_eq!(p.new_index(3), Some(2));
        assert_eq!(p.new_index(4), None);
        let msg = |r: Result<PrunePlan>| r.unwrap_err().to_string();
        assert!(msg(PrunePlan::new(6, &[])).contains("no layers"));
        assert!(msg(PrunePlan::new(6, &[2, 2])).contains("layer 2 is listed twice"));
        assert!(msg(PrunePlan::new(6, &[6])).contains("layer 6 is out of range"));
        assert!(msg(PrunePlan::new(2, &[0, 1])).contains("all 2 layers"));
    }
}
