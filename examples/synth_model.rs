//! Writes a synthetic GGUF of a real model's shape for the scale benchmark
//! (`scripts/bench-scale.sh`): the tensor names, dimensions and per-tensor types of Llama-3-8B,
//! a Qwen2.5-14B-like model or Llama-3-70B, with random weights and the tokenizer of a real
//! model. Only time, memory and bytes read mean anything on such a file, not its scores.
//!
//! ```text
//! cargo run --release --example synth_model -- --shape llama3-8b --type Q4_K_M -o llama3-8b.gguf
//! ```
//!
//! The data are generated in chunks as they are written, so a 40 GB file needs a few MiB of
//! memory (the metadata, a vocabulary of tokens, and one chunk).
//!
//! Weights: every quantized block gets random bytes from a seeded PRNG, then its f16 scale
//! fields are set to small finite values, so dequantized weights are finite and of the order
//! of 0.01 and the forward pass stays finite. Norm weights are 1, biases small. Types: the
//! crate's llama.cpp mix rules ([`gguf_prune::quant::mix::choose_types`]) for the file type,
//! as llama-quantize would choose them for a model of this shape.
//!
//! Tokenizer: every `tokenizer.*` key of a real model (SmolLM2 by default). llama.cpp requires
//! `token_embd` and `output` to have one row per vocabulary entry, so the vocabulary is padded
//! to the shape's size with control tokens `<|synthetic_pad_N|>`, which no text tokenizes to.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use clap::Parser;
use gguf_prune::arch::names;
use gguf_prune::gguf::write::write_header;
use gguf_prune::gguf::{
    align_up, arch_key, Array, GgmlType, GgufFile, Metadata, OutTensor, Pending, TensorData, Value,
};
use gguf_prune::output::OutputRule;
use gguf_prune::quant::mix::{choose_types, MixContext, TensorDesc};
use gguf_prune::quant::FileType;

/// A model shape: the hyperparameters that decide tensor sizes and types.
struct Shape {
    name: &'static str,
    arch: &'static str,
    blocks: usize,
    n_embd: u64,
    n_ff: u64,
    heads: u64,
    kv_heads: u64,
    vocab: u64,
    context: u32,
    rope_base: f32,
    rms_eps: f32,
    /// q/k/v biases (qwen2).
    qkv_bias: bool,
}

/// The shapes of the released models (their config.json), head size 128 throughout.
const SHAPES: &[Shape] = &[
    Shape {
        name: "llama3-8b",
        arch: "llama",
        blocks: 32,
        n_embd: 4096,
        n_ff: 14336,
        heads: 32,
        kv_heads: 8,
        vocab: 128256,
        context: 8192,
        rope_base: 500000.0,
        rms_eps: 1e-5,
        qkv_bias: false,
    },
    Shape {
        name: "qwen2.5-14b",
        arch: "qwen2",
        blocks: 48,
        n_embd: 5120,
        n_ff: 13824,
        heads: 40,
        kv_heads: 8,
        vocab: 152064,
        context: 32768,
        rope_base: 1000000.0,
        rms_eps: 1e-6,
        qkv_bias: true,
    },
    Shape {
        name: "llama3-70b",
        arch: "llama",
        blocks: 80,
        n_embd: 8192,
        n_ff: 28672,
        heads: 64,
        kv_heads: 8,
        vocab: 128256,
        context: 8192,
        rope_base: 500000.0,
        rms_eps: 1e-5,
        qkv_bias: false,
    },
];

/// Writes a synthetic GGUF of a real model shape (random weights, a real tokenizer).
#[derive(Parser)]
struct Args {
    /// llama3-8b, qwen2.5-14b or llama3-70b.
    #[arg(long)]
    shape: String,
    /// A llama-quantize file type: Q4_K_M, Q4_K_S, Q8_0, ...
    #[arg(long = "type", default_value = "Q4_K_M")]
    file_type: String,
    /// Every matrix gets the file type's default type (llama-quantize --pure).
    #[arg(long)]
    pure: bool,
    /// Fewer blocks than the shape has (to check a large shape quickly).
    #[arg(long)]
    blocks: Option<usize>,
    /// The model whose tokenizer.* keys are copied.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Seed of the weights.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Overwrite the output if it exists.
    #[arg(long)]
    force: bool,
    #[arg(short = 'o')]
    output: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let shape = SHAPES
        .iter()
        .find(|s| s.name == args.shape)
        .ok_or_else(|| {
            let names: Vec<&str> = SHAPES.iter().map(|s| s.name).collect();
            anyhow::anyhow!(
                "unknown shape {:?}; one of {}",
                args.shape,
                names.join(", ")
            )
        })?;
    let blocks = args.blocks.unwrap_or(shape.blocks);
    let ftype = FileType::parse(&args.file_type)?;
    let tokenizer = args.tokenizer.clone().unwrap_or_else(default_tokenizer);
    let meta = metadata(shape, blocks, ftype, &tokenizer)?;
    let tensors = tensors(shape, blocks, ftype, &meta, args.pure)?;
    let total = write(&args, &meta, &tensors)?;
    eprintln!(
        "{}: {} ({} blocks, {ftype}{}), {:.2} GiB",
        args.output.display(),
        shape.name,
        blocks,
        if args.pure { " pure" } else { "" },
        total as f64 / (1u64 << 30) as f64
    );
    Ok(())
}

fn default_tokenizer() -> PathBuf {
    let cache = std::env::var_os("GGUF_PRUNE_CACHE").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/gguf-prune"),
        PathBuf::from,
    );
    cache.join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// The shape's hyperparameters, the file type, and the tokenizer of `tokenizer_model` with its
/// vocabulary padded to the shape's.
fn metadata(
    shape: &Shape,
    blocks: usize,
    ftype: FileType,
    tokenizer_model: &std::path::Path,
) -> anyhow::Result<Metadata> {
    let a = shape.arch;
    let mut meta = Metadata::new();
    meta.set("general.architecture", Value::String(a.into()));
    meta.set(
        "general.name",
        Value::String(format!("synthetic {}", shape.name).into()),
    );
    let u32s = [
        ("block_count", blocks as u32),
        ("context_length", shape.context),
        ("embedding_length", shape.n_embd as u32),
        ("feed_forward_length", shape.n_ff as u32),
        ("attention.head_count", shape.heads as u32),
        ("attention.head_count_kv", shape.kv_heads as u32),
        ("rope.dimension_count", (shape.n_embd / shape.heads) as u32),
        ("vocab_size", shape.vocab as u32),
    ];
    for (key, v) in u32s {
        meta.set(&arch_key(a, key), Value::U32(v));
    }
    meta.set(&arch_key(a, "rope.freq_base"), Value::F32(shape.rope_base));
    meta.set(
        &arch_key(a, "attention.layer_norm_rms_epsilon"),
        Value::F32(shape.rms_eps),
    );
    meta.set("general.file_type", Value::U32(ftype.llama_ftype()));
    meta.set("general.quantization_version", Value::U32(2));
    let source = GgufFile::open(tokenizer_model)?;
    for (key, value) in source.content.metadata.iter() {
        if key.starts_with("tokenizer.") {
            meta.set(key, value.clone());
        }
    }
    pad_vocabulary(&mut meta, shape.vocab as usize)?;
    Ok(meta)
}

/// llama.cpp's token type for control tokens (`LLAMA_TOKEN_TYPE_CONTROL`).
const TOKEN_CONTROL: i32 = 3;

/// Extends `tokenizer.ggml.tokens` (and the per-token arrays) to `vocab` entries.
fn pad_vocabulary(meta: &mut Metadata, vocab: usize) -> anyhow::Result<()> {
    let Some(Value::Array(Array::String(tokens))) = meta.get("tokenizer.ggml.tokens") else {
        anyhow::bail!("the tokenizer model has no tokenizer.ggml.tokens strings");
    };
    let mut tokens = tokens.clone();
    let real = tokens.len();
    anyhow::ensure!(real <= vocab, "tokenizer has {real} tokens, shape {vocab}");
    tokens.extend((real..vocab).map(|i| format!("<|synthetic_pad_{i}|>").into_bytes()));
    meta.set("tokenizer.ggml.tokens", Value::Array(Array::String(tokens)));
    if let Some(Value::Array(Array::I32(types))) = meta.get("tokenizer.ggml.token_type") {
        let mut types = types.clone();
        types.resize(vocab, TOKEN_CONTROL);
        meta.set("tokenizer.ggml.token_type", Value::Array(Array::I32(types)));
    }
    if let Some(Value::Array(Array::F32(scores))) = meta.get("tokenizer.ggml.scores") {
        let mut scores = scores.clone();
        scores.resize(vocab, 0.0);
        meta.set("tokenizer.ggml.scores", Value::Array(Array::F32(scores)));
    }
    Ok(())
}

/// One tensor to write: its name, ggml dims (innermost first) and type.
struct Planned {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
}

/// The shape's tensors in file order, typed by the mix rules of `ftype`.
fn tensors(
    shape: &Shape,
    blocks: usize,
    ftype: FileType,
    meta: &Metadata,
    pure: bool,
) -> anyhow::Result<Vec<Planned>> {
    let (d, ff, v) = (shape.n_embd, shape.n_ff, shape.vocab);
    let head = d / shape.heads;
    let (q, kv) = (shape.heads * head, shape.kv_heads * head);
    let mut named: Vec<(String, Vec<u64>)> = vec![(names::TOKEN_EMBD.into(), vec![d, v])];
    for b in 0..blocks {
        let weights = [
            (names::ATTN_NORM, vec![d]),
            (names::ATTN_Q, vec![d, q]),
            (names::ATTN_K, vec![d, kv]),
            (names::ATTN_V, vec![d, kv]),
            (names::ATTN_OUTPUT, vec![q, d]),
            (names::FFN_NORM, vec![d]),
            (names::FFN_GATE, vec![d, ff]),
            (names::FFN_UP, vec![d, ff]),
            (names::FFN_DOWN, vec![ff, d]),
        ];
        named.extend(
            weights
                .into_iter()
                .map(|(n, dims)| (names::block_weight(b, n), dims)),
        );
        if shape.qkv_bias {
            let biases = [(names::ATTN_Q, q), (names::ATTN_K, kv), (names::ATTN_V, kv)];
            named.extend(
                biases
                    .into_iter()
                    .map(|(n, len)| (names::block_bias(b, n), vec![len])),
            );
        }
    }
    named.push((names::OUTPUT_NORM.into(), vec![d]));
    named.push((names::OUTPUT.into(), vec![d, v]));

    let ctx = MixContext::from_metadata(meta, false, pure)?;
    let descs: Vec<TensorDesc> = named
        .iter()
        .map(|(name, dims)| TensorDesc {
            name,
            dims,
            ggml_type: GgmlType::F32,
        })
        .collect();
    let choices = choose_types(ftype, &ctx, &descs)?;
    Ok(named
        .into_iter()
        .zip(choices)
        .map(|((name, dims), c)| Planned {
            name,
            dims,
            ty: c.ty,
        })
        .collect())
}

/// Writes header and data through a temporary file beside the output; returns the file size.
fn write(args: &Args, meta: &Metadata, tensors: &[Planned]) -> anyhow::Result<u64> {
    let alignment = 32;
    let mut offsets = Vec::with_capacity(tensors.len());
    let mut next = 0u64;
    let mut sizes = Vec::with_capacity(tensors.len());
    for t in tensors {
        let n: u64 = t.dims.iter().product();
        let size =
            t.ty.bytes_for(n)
                .ok_or_else(|| anyhow::anyhow!("{}: {:?} {:?}", t.name, t.ty, t.dims))?;
        offsets.push(next);
        sizes.push(size);
        next = align_up(next + size, alignment);
    }
    // write_header reads only names, dims and types; the data are streamed below.
    let outs: Vec<OutTensor> = tensors
        .iter()
        .map(|t| OutTensor {
            name: t.name.clone(),
            dims: t.dims.clone(),
            ggml_type: t.ty,
            data: TensorData::Bytes(Vec::new()),
        })
        .collect();
    let refs: Vec<&OutTensor> = outs.iter().collect();
    let pending = Pending::create(&args.output, &OutputRule::new(args.force, []))?;
    let mut out = BufWriter::with_capacity(8 << 20, pending.file(0));
    let header = write_header(&mut out, 3, meta, &refs, &offsets, alignment)?;
    for (i, (t, &size)) in tensors.iter().zip(&sizes).enumerate() {
        let mut rng = Rng::new(args.seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
        write_data(&mut out, t, size, &mut rng)?;
        let pad = align_up(size, alignment) - size;
        out.write_all(&vec![0u8; pad as usize])?;
    }
    out.flush()?;
    drop(out);
    pending.commit()?;
    Ok(header + next)
}

/// Blocks (or elements) generated per chunk: about 4 MiB.
const CHUNK_BYTES: u64 = 4 << 20;

/// Streams one tensor's `size` bytes of data to `out`, one chunk at a time.
fn write_data(out: &mut impl Write, t: &Planned, size: u64, rng: &mut Rng) -> anyhow::Result<()> {
    let role = t.name.rsplit('.').nth(1).unwrap_or("");
    if t.ty == GgmlType::F32 {
        // Norm weights 1 (as at initialisation), biases small.
        let n = size / 4;
        let values: Vec<f32> = if role.ends_with("norm") {
            vec![1.0; n as usize]
        } else {
            (0..n).map(|_| rng.unit() * 0.02).collect()
        };
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        out.write_all(&bytes)?;
        return Ok(());
    }
    let layout = BlockLayout::of(t.ty)
        .ok_or_else(|| anyhow::anyhow!("{}: no synthetic blocks for {}", t.name, t.ty))?;
    let per_chunk = (CHUNK_BYTES / layout.bytes).max(1) * layout.bytes;
    let mut buf = vec![0u8; per_chunk as usize];
    let mut left = size;
    while left > 0 {
        let step = left.min(per_chunk) as usize;
        let chunk = &mut buf[..step];
        rng.fill(chunk);
        for block in chunk.chunks_exact_mut(layout.bytes as usize) {
            layout.set_scales(block, rng);
        }
        out.write_all(chunk)?;
        left -= step as u64;
    }
    Ok(())
}

/// Where a block type keeps its f16 scale fields, and what magnitude they get so that the
/// dequantized weights are of the order of 0.01 (the largest quant times the largest
/// sub-block scale, times `d`, is about 0.02).
struct BlockLayout {
    bytes: u64,
    /// Byte offsets of the f16 fields in a block, with the base value of each.
    fields: &'static [(usize, f32)],
    /// For F16/BF16 tensors: every 2-byte element is a value, not a scale.
    elementwise: Option<GgmlType>,
}

impl BlockLayout {
    /// ggml's block layouts (ggml-common.h): `d` (and `dmin`/`m`) fields.
    fn of(ty: GgmlType) -> Option<BlockLayout> {
        let (bytes, fields): (u64, &'static [(usize, f32)]) = match ty {
            GgmlType::F16 | GgmlType::BF16 => {
                return Some(BlockLayout {
                    bytes: 2,
                    fields: &[],
                    elementwise: Some(ty),
                })
            }
            GgmlType::Q4_0 => (18, &[(0, 0.02 / 8.0)]),
            GgmlType::Q4_1 => (20, &[(0, 0.02 / 15.0), (2, -0.01)]),
            GgmlType::Q5_0 => (22, &[(0, 0.02 / 16.0)]),
            GgmlType::Q5_1 => (24, &[(0, 0.02 / 31.0), (2, -0.01)]),
            GgmlType::Q8_0 => (34, &[(0, 0.02 / 127.0)]),
            GgmlType::Q2_K => (84, &[(80, 0.02 / 45.0), (82, 0.01 / 15.0)]),
            GgmlType::Q3_K => (110, &[(108, 0.02 / 128.0)]),
            GgmlType::Q4_K => (144, &[(0, 0.02 / 945.0), (2, 0.01 / 63.0)]),
            GgmlType::Q5_K => (176, &[(0, 0.02 / 1953.0), (2, 0.01 / 63.0)]),
            GgmlType::Q6_K => (210, &[(208, 0.02 / 4096.0)]),
            _ => return None,
        };
        Some(BlockLayout {
            bytes,
            fields,
            elementwise: None,
        })
    }

    /// Overwrites the random bytes of one block's f16 fields with finite values around their
    /// base (0.5x to 1.5x), or, elementwise, a random value of about 0.02.
    fn set_scales(&self, block: &mut [u8], rng: &mut Rng) {
        if let Some(ty) = self.elementwise {
            let v = rng.unit() * 0.02;
            let bits = if ty == GgmlType::BF16 {
                half::bf16::from_f32(v).to_bits()
            } else {
                half::f16::from_f32(v).to_bits()
            };
            block.copy_from_slice(&bits.to_le_bytes());
            return;
        }
        for &(at, base) in self.fields {
            let v = base * (1.0 + 0.5 * rng.unit());
            block[at..at + 2].copy_from_slice(&half::f16::from_f32(v).to_bits().to_le_bytes());
        }
    }
}

/// xorshift64*: fast, seeded, good enough for weights nobody reads.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}
