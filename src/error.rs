//! One error type for the library, grouped by the stage that raises it.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // === I/O ===
    /// Occurs when reading or writing a file fails.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Wraps an error with the file it concerns.
    #[error("{}: {source}", path.display())]
    InFile { path: PathBuf, source: Box<Error> },
    /// Occurs when an output path exists and replacing files was not allowed
    /// ([`crate::output::OutputRule`]); the command line says how to allow it.
    #[error("{} already exists", path.display())]
    OutputExists { path: PathBuf },
    #[error("refusing to write {}: it is an input of this run", path.display())]
    OutputIsInput { path: PathBuf },
    /// Occurs when the output path is a folder, a FIFO or a device: never replaced, even
    /// when replacing files is allowed.
    #[error("{} exists and is not a regular file; refusing to replace it", path.display())]
    OutputNotRegular { path: PathBuf },
    #[error("interrupted")]
    Interrupted,
    /// Occurs when an input is a folder, device or pipe: reading it could block or never end.
    #[error("{}: not a regular file (a folder, device or pipe)", path.display())]
    NotRegularFile { path: PathBuf },
    /// Occurs when an input file is larger than what its kind may hold ([`crate::limits`]).
    #[error("{}: {len} bytes, more than the {limit} bytes {what} may have", path.display())]
    FileTooLarge {
        path: PathBuf,
        len: u64,
        limit: u64,
        what: &'static str,
    },
    /// Occurs when a requested count (context, token budget) is outside what the model and this
    /// build support ([`crate::limits`]).
    #[error("{what} {value} is out of range: {why}")]
    OutOfRange {
        what: &'static str,
        value: u64,
        why: String,
    },

    // === Format ===
    /// Occurs when the GGUF bytes are malformed.
    #[error("at byte {offset}: {what}")]
    Parse { offset: u64, what: String },
    #[error("tensor {name:?}: data at byte {offset}, {len} bytes long, runs past the end of the file ({file_len} bytes)")]
    TensorOutOfBounds {
        name: String,
        offset: u64,
        len: u64,
        file_len: u64,
    },
    #[error("missing metadata key {key:?}")]
    MissingKey { key: String },
    #[error("metadata key {key:?} is {found}, expected {expected}")]
    KeyType {
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("no tensor named {name:?}")]
    MissingTensor { name: String },
    /// Occurs when `{arch}.block_count` is not an unsigned integer or is beyond any real model.
    #[error("metadata key {key:?} is {found}: {why}")]
    BlockCount {
        key: String,
        found: String,
        why: String,
    },
    /// Occurs when a tensor's type id is one ggml does not define (unknown, or removed like Q4_2):
    /// llama.cpp's loader refuses the file.
    #[error("tensor {name:?} has type id {id}, which ggml does not define (unknown or removed type); llama.cpp cannot load it")]
    UnknownTensorType { name: String, id: u32 },
    /// Occurs when a metadata value is an array of arrays, which llama.cpp's loader refuses.
    #[error("metadata key {key:?} is an array of arrays; llama.cpp cannot load it")]
    NestedArray { key: String },
    /// Occurs when a block lacks a tensor that every block of its architecture has.
    #[error("block {block} has no tensor {name:?}, which every {arch} block needs")]
    MissingBlockTensor {
        arch: String,
        block: usize,
        name: String,
    },
    /// Occurs when a tensor's dimensions are not what the hyperparameters imply.
    #[error("tensor {name:?} has dims {dims:?}, expected {expected}")]
    TensorShape {
        name: String,
        dims: Vec<u64>,
        expected: String,
    },
    /// Occurs when a hyperparameter is present but out of range (zero, negative, NaN, Inf,
    /// inconsistent with another).
    #[error("metadata key {key:?} is {value}: {why}")]
    Hparam {
        key: String,
        value: String,
        why: String,
    },
    /// A value or structure that is well-formed but not acceptable.
    #[error("{0}")]
    Invalid(String),

    // === Architecture and pruning ===
    #[error("metadata key {key:?} has {got} per-layer entries, expected {expected} (block_count)")]
    PerLayerLength {
        key: String,
        expected: usize,
        got: usize,
    },
    /// Occurs when the requested layer list is not valid for the model.
    #[error("invalid layer list: {0}")]
    Layers(String),
    /// Occurs when removing the requested layers would change what the kept layers do and
    /// nothing in the format can express it.
    #[error("cannot remove these layers from a {arch} model: {why}")]
    ArchConflict { arch: String, why: String },
    #[error("architecture {arch:?}: {what}")]
    Unsupported { arch: String, what: String },
    /// Occurs when expert saliency or expert pruning is asked of a model whose blocks are not
    /// mixtures of experts.
    #[error("the {arch} model has no mixture-of-experts blocks")]
    NoExperts { arch: String },
    /// Occurs when the number of experts to keep is 0 or not below the model's expert count.
    #[error(
        "cannot keep {keep} of {n_expert} experts per block: keep at least 1 and fewer than all"
    )]
    ExpertKeep { keep: usize, n_expert: usize },

    // === Verification ===
    #[error("verification failed: {0}")]
    Verify(String),
    // === Tokenizer ===
    /// Occurs when `tokenizer.ggml.model` names a tokenizer this crate does not implement.
    #[error("tokenizer.ggml.model {model:?} is not supported (supported: \"gpt2\" byte-level BPE, \"llama\" SentencePiece)")]
    UnsupportedTokenizer { model: String },
    /// Occurs when `tokenizer.ggml.pre` names a pre-tokenizer this crate does not know.
    #[error("tokenizer.ggml.pre {pre:?} is not a pre-tokenizer type this tokenizer knows")]
    UnknownPreTokenizer { pre: String },
    /// Occurs when the vocabulary metadata is inconsistent, or text cannot be tokenized with it.
    #[error("tokenizer: {what}")]
    Tokenize { what: String },
    // === Forward pass and scoring ===
    /// Occurs when a model's tensors do not fit the forward pass (shapes, types).
    #[error("forward pass: {0}")]
    Forward(String),
    /// Occurs when the residual stream leaving a block holds NaN or Inf: the weights or
    /// hyperparameters overflow there, and every score or perplexity after it would be NaN.
    #[error("forward pass: the residual stream after block {block} holds NaN or Inf (window {window}); the model's weights or hyperparameters overflow there")]
    NonFinite { block: usize, window: usize },
    #[error("forward pass, {what}: {source}")]
    Candle {
        what: String,
        source: candle_core::Error,
    },
    /// Occurs when the calibration text or options cannot give what scoring needs.
    #[error("calibration: {0}")]
    Calibration(String),
    /// Occurs when the calibration text gives fewer tokens than the work needs (an importance
    /// matrix needs one whole chunk).
    #[error("the calibration text gives {have} tokens; {what} needs {need}")]
    ShortCalibration {
        have: usize,
        need: usize,
        what: &'static str,
    },
    // === Quantization ===
    /// Occurs when a tensor type has no (de)quantization kernel in this build.
    #[error("cannot {op} {ty}: not supported by this build")]
    QuantUnsupported {
        ty: crate::gguf::GgmlType,
        op: &'static str,
    },
    /// Occurs when an importance-matrix file is malformed or does not fit the model.
    #[error("importance matrix {}: {what}", path.display())]
    Imatrix { path: PathBuf, what: String },
    /// Occurs when a file type's mix needs an importance matrix and none is used (Q2_K_S, as in
    /// llama-quantize); the command line names the option that gives one.
    #[error("{ftype} needs an importance matrix for tensor {tensor:?}")]
    NeedsImatrix { ftype: &'static str, tensor: String },
    /// Occurs when healed tensors are asked for in a type this build cannot quantize to; the
    /// command line names the option that chose it.
    #[error("healed tensors cannot be written as {ty}: this build cannot quantize to it")]
    HealTypeUnsupported { ty: String },

    /// Occurs when a refined selection (a greedy set guided by the comparison) is asked for but
    /// the text gives fewer than the two windows a comparison needs.
    #[error(
        "a refined selection needs at least 2 windows of {ctx} tokens; the text gives {windows}"
    )]
    RefineNeedsWindows { ctx: usize, windows: usize },

    // === Evaluation ===
    /// Occurs when the evaluation text is too short for even the first chunk pair.
    #[error("the text tokenizes to only {have} tokens; a context of {n_ctx} needs at least {need} (2 x context)")]
    TooFewTokens {
        have: usize,
        need: usize,
        n_ctx: usize,
    },
    #[error("context size {n_ctx} is too small: {why}")]
    ContextSize { n_ctx: usize, why: String },
    /// Occurs when two sides of a comparison disagree on the vocabulary (or a token id is out of it).
    #[error("vocabulary mismatch: {0}")]
    VocabMismatch(String),
    /// Occurs when a `--kl-divergence-base` logits file is malformed or truncated.
    #[error("{}: at byte {offset}: {what}", path.display())]
    KlBaseFormat {
        path: PathBuf,
        offset: u64,
        what: String,
    },
    /// Occurs when a logits source breaks its contract (row length, order, missing rows).
    #[error("logits source: {0}")]
    LogitsSource(String),
    // === Heal ===
    /// Occurs when healing (ReplaceMe fit and fold) cannot run on the model or options.
    #[error("heal: {0}")]
    Heal(String),
    // === Jobs ===
    /// Wraps an error with the step of a job it happened in ("healing m.gguf").
    #[error("{step}: {source}")]
    Step { step: String, source: Box<Error> },
    /// Occurs when the importance matrix a prune job saves beside its model cannot be written
    /// or put in place; the command line names the option that asked for it.
    #[error("the importance matrix output: {source}")]
    ImatrixOutput { source: Box<Error> },
    // model, score, tokenizer, tasks
    /// Occurs when a tensor's `blk.N` name places it at or past `{arch}.block_count`.
    #[error("tensor {name:?} belongs to block {block}, but block_count is {block_count}")]
    BlockPastCount {
        name: String,
        block: usize,
        block_count: usize,
    },
    /// Occurs when a block below `{arch}.block_count` has no tensors at all.
    #[error(
        "block {block} has no tensors (block_count is {block_count}): the file is missing blocks"
    )]
    MissingBlock { block: usize, block_count: usize },
    /// Occurs when `{arch}.nextn_predict_layers` counts more multi-token-prediction heads than
    /// the model has blocks.
    #[error("{key} = {nextn} exceeds block_count {block_count}")]
    NextnPastCount {
        key: String,
        nextn: usize,
        block_count: usize,
    },
    /// Occurs when a metadata list of layer indices (such as `{arch}.ple.layers`) holds
    /// something other than non-negative integers.
    #[error("{key}: {what}")]
    LayerIndexList { key: String, what: String },
    /// Occurs when a task file (HellaSwag, WinoGrande, multiple-choice) is not in its format;
    /// `line` (from 1) when one line is at fault.
    #[error("{}{what}", line.map_or(String::new(), |l| format!("line {l}: ")))]
    TaskFile { line: Option<usize>, what: String },
    /// Occurs when a task's choices cannot be scored the way llama-perplexity scores them
    /// (no shared context, a choice that adds no token, inconsistent tokenization).
    #[error("task {index}: {why}")]
    UnscorableTask { index: usize, why: String },
    /// Occurs when a task needs more tokens than llama-perplexity's context for tasks holds
    /// (`max`: 4 sequences of the context size).
    #[error("task {index} needs {need} tokens, more than the {max} of the context (4 x the context size, as llama-perplexity runs tasks)")]
    TaskTooLong {
        index: usize,
        need: usize,
        max: usize,
    },
    /// Occurs when a perplexity or KL evaluation is asked for zero chunks.
    #[error("the number of chunks must be at least 1")]
    NoChunks,

    // quant, kernels, gguf writer
    // === Kernels ===
    /// Occurs when a row length is not a whole number of the type's blocks.
    #[error("a row of {n_per_row} elements cannot be stored as {ty} (blocks of {block})")]
    RowNotWholeBlocks {
        n_per_row: usize,
        ty: crate::gguf::GgmlType,
        block: usize,
    },
    /// Occurs when the values given to quantize are not whole rows.
    #[error("{len} values do not make whole rows of {n_per_row}")]
    NotWholeRows { len: usize, n_per_row: usize },
    /// Occurs when an importance vector's length is not the row length.
    #[error("importance vector has {got} entries, rows have {n_per_row}")]
    ImportanceWidth { got: usize, n_per_row: usize },
    /// Occurs when the elements asked for from dequantization are not whole blocks.
    #[error("{n} elements are not whole {ty} blocks of {block}")]
    NotWholeBlocks {
        n: usize,
        ty: crate::gguf::GgmlType,
        block: usize,
    },
    /// Occurs when the bytes given to dequantize are not what the elements take.
    #[error("{n} elements of {ty} take {need} bytes, got {got}")]
    QuantDataLength {
        n: usize,
        ty: crate::gguf::GgmlType,
        need: usize,
        got: usize,
    },
    // === Quantization of a model ===
    /// Wraps an error with the tensor it concerns.
    #[error("tensor {name:?}: {source}")]
    InTensor { name: String, source: Box<Error> },
    /// Occurs when a tensor's element count is not a whole number of the new type's blocks.
    #[error("tensor {name:?}: {n_el} elements do not fit {ty}")]
    ElementsDoNotFit {
        name: String,
        n_el: u64,
        ty: crate::gguf::GgmlType,
    },
    /// Occurs when an importance-matrix entry's length is not the tensor's columns times its
    /// expert matrices.
    #[error("importance vector of {name:?} has {got} values, the tensor needs {want}")]
    ImportanceLength { name: String, got: usize, want: u64 },
    /// Occurs when an importance matrix holds NaN or Inf (llama-quantize refuses it too).
    #[error("importance matrix entry {name:?} holds a non-finite value ({value})")]
    ImatrixNonFinite { name: String, value: f32 },
    /// Occurs when a collected weight's input width changed during the forward pass (a bug of
    /// the pass, reported instead of a panic).
    #[error("importance matrix: the inputs of {name:?} changed width during the pass")]
    ImatrixWidthChanged { name: String },
    /// Occurs when an expert model's ffn_down tensor has no layer in its name: the mix rules
    /// need it.
    #[error("cannot tell the layer of tensor {name:?}")]
    NoLayer { name: String },
    /// Occurs when a tensor's layer is beyond the model's block count.
    #[error("tensor {name:?} is in layer {layer}, but the model has {n_layer} layers")]
    LayerBeyondCount {
        name: String,
        layer: usize,
        n_layer: usize,
    },
    // === GGUF writer ===
    /// Occurs when asked to write a GGUF version llama.cpp does not read.
    #[error("cannot write GGUF version {version} (only 2 and 3)")]
    WriteVersion { version: u32 },
    /// Occurs when `general.alignment` is not a power of two stored as u32.
    #[error("{key} is {shown} ({value_type:?}), expected a power of two as u32")]
    WriteAlignment {
        key: &'static str,
        shown: String,
        value_type: crate::gguf::ValueType,
    },
    /// Occurs when two tensors to write have one name.
    #[error("two output tensors are named {name:?}")]
    DuplicateTensor { name: String },
    /// Occurs when a tensor to write has more dimensions than ggml allows.
    #[error("tensor {name:?} has {n_dims} dimensions, at most {max} allowed")]
    TooManyDims {
        name: String,
        n_dims: usize,
        max: u32,
    },
    /// Occurs when a tensor's data is not the size its type and dimensions take (`takes` is
    /// `None` when they make no whole number of bytes).
    #[error("tensor {name:?}: {len} bytes of data, but {ty} {dims:?} takes {}", takes_text(*.takes))]
    DataLength {
        name: String,
        len: u64,
        ty: crate::gguf::GgmlType,
        dims: Vec<u64>,
        takes: Option<u64>,
    },
    /// Occurs when data made while writing is not the length announced in the header.
    #[error("tensor {name:?}: made {got} bytes, expected {want}")]
    MadeLength { name: String, got: usize, want: u64 },
    // === Split models ===
    /// Occurs when `split.count` is not an integer.
    #[error("{key} is {shown}, expected an integer")]
    SplitCountType { key: &'static str, shown: String },
    /// Occurs when a split model is opened at a shard other than the first.
    #[error("is shard {} of {count}; open the first shard (…-00001-of-{count:05}.gguf)", .no + 1)]
    NotFirstShard { no: u64, count: u64 },
    /// Occurs when a split model's first shard is not named the way its shards are found.
    #[error("has {key} = {count} but its name does not end in -00001-of-{count:05}.gguf")]
    SplitName { key: &'static str, count: u64 },
    /// Occurs when a shard's `split.no` is not its place in the split.
    #[error("expected {key} = {expected}, found {found:?}")]
    ShardNumber {
        key: &'static str,
        expected: u64,
        found: Option<u64>,
    },
    /// Occurs when two shards hold a tensor of one name.
    #[error("tensor {name:?} appears in more than one shard")]
    TensorInTwoShards { name: String },
    /// Occurs when `split.tensors.count` is not the number of tensors the shards hold.
    #[error("{key} is {shown}, but the shards hold {held} tensors")]
    SplitTensorCount {
        key: &'static str,
        shown: String,
        held: usize,
    },
    /// Occurs when a split would make more shards than llama.cpp counts.
    #[error("the split would make {n_shards} shards, but llama.cpp counts them in a u16 (at most {}): use a larger split size", u16::MAX)]
    TooManyShards { n_shards: u64 },
}

/// [`Error::DataLength`]'s `takes`, as its message shows it.
fn takes_text(takes: Option<u64>) -> String {
    takes.map_or("no whole number of bytes".into(), |e| e.to_string())
}

impl Error {
    /// This error as one of the job step `step` (see [`Error::Step`]).
    pub fn in_step(self, step: impl Into<String>) -> Error {
        Error::Step {
            step: step.into(),
            source: Box::new(self),
        }
    }
}
