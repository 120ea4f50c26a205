//! The block tensors healing reads and replaces, named as llama.cpp names them: the one place
//! healing spells a tensor name. (Nothing below the edit layer builds `blk.N.*` names yet; the
//! forward pass spells its own. These should come from one shared helper once there is one.)

/// The FFN's down projection: what [`crate::forward::BlockObserver::matmul_input`] calls the
/// matmul whose input healing captures, and the weight the fold rewrites.
pub(super) const FFN_DOWN: &str = "ffn_down";
/// gemma2/3's post-FFN norm, between `ffn_down` and the stream (the approximate fold).
pub(super) const POST_FFN_NORM: &str = "post_ffw_norm";

/// `blk.{il}.{role}.weight`.
pub(super) fn weight(il: usize, role: &str) -> String {
    format!("blk.{il}.{role}.weight")
}

/// `blk.{il}.{role}.bias`.
pub(super) fn bias(il: usize, role: &str) -> String {
    format!("blk.{il}.{role}.bias")
}
