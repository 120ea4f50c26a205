//! The model side of evaluation: anything that turns token windows into next-token logits.
//!
//! The forward pass implements this trait (`src/forward`); until that branch is merged the
//! definition lives here, identical, so evaluation can be written and tested against synthetic
//! sources. When both exist, this file is replaced by a re-export of the forward's trait.

/// A model that produces one row of `n_vocab` logits per token position.
pub trait LogitsSource {
    /// The number of logits in each row (the vocabulary size of the output head).
    fn n_vocab(&self) -> usize;
    /// Runs each window (token ids, already including BOS where wanted) through the model and calls
    /// `f(window_index, position, logits_row)` for every position >= `first` of every window, in order.
    #[allow(clippy::type_complexity)]
    fn logits(
        &mut self,
        windows: &[Vec<u32>],
        first: usize,
        f: &mut dyn FnMut(usize, usize, &[f32]) -> crate::Result<()>,
    ) -> crate::Result<()>;
}
