//! Perplexity and KL divergence (in progress).
