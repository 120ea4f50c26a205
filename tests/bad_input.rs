//! Hostile and broken GGUF input at the library level: every case must be an `Err` (never a
//! panic), whose message names the offending value and where it is, without allocating more
//! than the file could hold.

pub mod common;
pub mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

use gguf_prune::gguf::{Array, Content, GgufFile, Model, Value};
use support::{
    assert_rejects, every_value_type, parse_err, put_u32, put_u64, tiny_llama, write_file, Gguf,
    F32, Q4_0, Q8_0,
};

// === A counting allocator: the largest single allocation made by the current thread ===

struct Counting;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|c| {
        if size > c.get() {
            c.set(size)
        }
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged; only sizes are noted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Parses `bytes`, asserts it fails with every needle in the message, and that no single
/// allocation was larger than a few times the input (a hostile count must not reserve memory).
#[track_caller]
fn rejects_cheaply(bytes: &[u8], needles: &[&str]) -> String {
    LARGEST.with(|c| c.set(0));
    let result = Content::parse(bytes);
    let largest = LARGEST.with(|c| c.get());
    let msg = match result {
        Ok(_) => panic!("expected an error mentioning {needles:?}"),
        Err(e) => e.to_string(),
    };
    for n in needles {
        assert!(msg.contains(n), "error {msg:?} does not mention {n:?}");
    }
    assert!(
        largest <= 4 * bytes.len() + 4096,
        "parsing {} hostile bytes allocated {largest} bytes at once ({msg})",
        bytes.len()
    );
    msg
}

/// A small valid file whose last tensor ends exactly at the end of the file, so that cutting
/// any byte off must be noticed.
fn small_valid() -> Gguf {
    let mut g = Gguf::new(3);
    for (k, v) in every_value_type() {
        g = g.kv(k, v);
    }
    let mut g = g
        .f32_tensor("a.weight", &[3], 1.0)
        .tensor("q.weight", &[32], Q8_0, (0..34).collect())
        .tensor("scalar", &[], F32, 7.5f32.to_le_bytes().to_vec())
        .f32_tensor("z.weight", &[8], 2.0);
    g.pad_end = false;
    g
}

fn base() -> Gguf {
    Gguf::new(3)
        .kv("general.architecture", Value::String(b"llama".to_vec()))
        .kv("llama.block_count", Value::U32(2))
        .f32_tensor("a.weight", &[8], 1.0)
        .f32_tensor("b.weight", &[8], 2.0)
}

fn set_u64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn truncation_at_every_byte_is_an_error() {
    let built = small_valid().build();
    let bytes = &built.bytes;
    let c = Content::parse(bytes).unwrap();
    let last = c.tensors.last().unwrap();
    assert_eq!(
        c.data_offset + last.offset + last.size,
        bytes.len() as u64,
        "the last tensor must end the file"
    );
    for cut in 0..bytes.len() {
        let msg = rejects_cheaply(&bytes[..cut], &[]);
        assert!(
            msg.contains("byte"),
            "cut at {cut}: message {msg:?} names no offset"
        );
        if cut >= built.data_offset {
            assert!(
                msg.contains("runs past the end of the file"),
                "cut at {cut}: {msg}"
            );
        }
    }
}

#[test]
fn truncated_files_on_disk_are_errors_naming_the_path() {
    let dir = common::workdir();
    let bytes = small_valid().build().bytes;
    for cut in [0, 3, 4, 23, 100, bytes.len() - 1] {
        let path = write_file(dir.path(), &format!("cut{cut}.gguf"), &bytes[..cut]);
        let msg = match GgufFile::open(&path) {
            Ok(_) => panic!("cut at {cut} opened"),
            Err(e) => e.to_string(),
        };
        assert!(msg.contains(&format!("cut{cut}.gguf")), "{msg}");
        if cut == 0 {
            assert!(msg.contains("file is empty"), "{msg}");
        }
    }
    let missing = dir.path().join("missing.gguf");
    let msg = GgufFile::open(&missing).err().unwrap().to_string();
    assert!(msg.contains("missing.gguf"), "{msg}");
    // A folder, a device and a named pipe are refused before opening (a pipe would block).
    let fifo = common::named_pipe(dir.path(), "pipe.gguf");
    for p in [dir.path(), Path::new("/dev/zero"), &fifo] {
        let msg = GgufFile::open(p).err().unwrap().to_string();
        assert!(
            msg.contains(p.to_str().unwrap()) && msg.contains("not a regular file"),
            "{msg}"
        );
    }
}

#[test]
fn wrong_magic() {
    for magic in [*b"GGML", *b"gguf", [0; 4], *b"FUGG"] {
        let mut g = base();
        g.magic = magic;
        let shown = String::from_utf8_lossy(&magic).into_owned();
        rejects_cheaply(
            &g.build().bytes,
            &["at byte 0", "not a GGUF file", &format!("{shown:?}")],
        );
    }
    rejects_cheaply(b"GG", &["at byte 0", "magic needs 4 bytes, 2 remain"]);
}

#[test]
fn unsupported_versions() {
    let with_version = |v: u32| {
        let mut g = base();
        g.version = v;
        g.build().bytes
    };
    rejects_cheaply(
        &with_version(1),
        &["at byte 4", "version 1 is not supported"],
    );
    rejects_cheaply(
        &with_version(0),
        &["at byte 4", "unsupported GGUF version 0"],
    );
    rejects_cheaply(
        &with_version(4),
        &["at byte 4", "unsupported GGUF version 4"],
    );
    rejects_cheaply(
        &with_version(0xFFFF_FFFF),
        &["at byte 4", "unsupported GGUF version 4294967295"],
    );
}

#[test]
fn big_endian_files_are_named_as_such() {
    for v in [2u32, 3] {
        // A big-endian writer swaps every number; the version is the first one read.
        let mut bytes = base().build().bytes;
        bytes[4..8].copy_from_slice(&v.to_be_bytes());
        for at in [8, 16] {
            let n = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
            bytes[at..at + 8].copy_from_slice(&n.to_be_bytes());
        }
        rejects_cheaply(
            &bytes,
            &["at byte 4", "big-endian", &format!("{:#x}", v.swap_bytes())],
        );
    }
}

#[test]
fn counts_larger_than_the_file() {
    for count in [3u64, 1 << 20, 1 << 40, u64::MAX / 2, u64::MAX] {
        let mut g = base();
        g.tensor_count = Some(count);
        let bytes = g.build().bytes;
        if count == 3 {
            // Plausible by size: the third tensor info is read from the data section.
            rejects_cheaply(&bytes, &["byte"]);
        } else {
            rejects_cheaply(
                &bytes,
                &["at byte 8", &format!("tensor count {count} cannot fit")],
            );
        }
        let mut g = base();
        g.kv_count = Some(count);
        let bytes = g.build().bytes;
        if count > 3 {
            rejects_cheaply(
                &bytes,
                &[
                    "at byte 16",
                    &format!("metadata key-value count {count} cannot fit"),
                ],
            );
        } else {
            rejects_cheaply(&bytes, &["byte"]);
        }
    }
}

#[test]
fn string_lengths_larger_than_the_file() {
    // Key length.
    let built = base().build();
    for len in [1u64 << 32, u64::MAX] {
        let mut bytes = built.bytes.clone();
        set_u64(&mut bytes, built.kv_at[1], len);
        rejects_cheaply(
            &bytes,
            &[
                &format!("at byte {}", built.kv_at[1]),
                &format!("key: string length {len} exceeds"),
            ],
        );
    }
    // A string value's length.
    let built = Gguf::new(3)
        .kv("general.name", Value::String(b"tiny".to_vec()))
        .build();
    let at = built.kv_type_at[0] + 4;
    let mut bytes = built.bytes.clone();
    set_u64(&mut bytes, at, 1 << 50);
    rejects_cheaply(
        &bytes,
        &[
            &format!("at byte {at}"),
            "general.name: string length 1125899906842624 exceeds",
        ],
    );
    // A tensor name's length.
    let built = base().build();
    let mut bytes = built.bytes.clone();
    set_u64(&mut bytes, built.tensor_at[1], 1 << 33);
    rejects_cheaply(
        &bytes,
        &[
            &format!("at byte {}", built.tensor_at[1]),
            "tensor name: string length 8589934592 exceeds",
        ],
    );
}

#[test]
fn array_counts_larger_than_the_file() {
    let cases: Vec<(Array, &str)> = vec![
        (Array::U32(vec![1, 2]), "U32"),
        (Array::U8(vec![1]), "U8"),
        (Array::String(vec![b"x".to_vec()]), "String"),
        (Array::Array(vec![Array::U8(vec![])]), "Array"),
        (Array::Bool(vec![true]), "Bool"),
    ];
    for (array, elem) in cases {
        for count in [1u64 << 30, 1 << 61, u64::MAX] {
            let built = Gguf::new(3)
                .kv("general.architecture", Value::String(b"x".to_vec()))
                .kv("tokenizer.ggml.tokens", Value::Array(array.clone()))
                .build();
            let array_at = built.kv_type_at[1] + 4;
            let mut bytes = built.bytes.clone();
            set_u64(&mut bytes, array_at + 4, count);
            rejects_cheaply(
                &bytes,
                &[
                    &format!("at byte {array_at}"),
                    &format!("\"tokenizer.ggml.tokens\": array of {count} {elem} cannot fit"),
                ],
            );
        }
    }
    // An inner array's count.
    let built = Gguf::new(3)
        .kv(
            "nested",
            Value::Array(Array::Array(vec![Array::I32(vec![1]), Array::I32(vec![2])])),
        )
        .build();
    let outer = built.kv_type_at[0] + 4;
    let second_inner = outer + 12 + (12 + 4);
    let mut bytes = built.bytes.clone();
    set_u64(&mut bytes, second_inner + 4, 1 << 40);
    rejects_cheaply(
        &bytes,
        &[
            &format!("at byte {second_inner}"),
            "array of 1099511627776 I32 cannot fit",
        ],
    );
}

#[test]
fn tensor_sizes_larger_than_the_file() {
    // Dimensions whose product fits in an i64 but whose data is not in the file.
    let mut g = base();
    g.tensors[1].dims = vec![1 << 20, 1 << 20];
    let built = g.build();
    rejects_cheaply(
        &built.bytes,
        &[
            "tensor \"b.weight\"",
            &format!("data at byte {}", built.data_offset + 32),
            &format!("{} bytes long", 4u64 << 40),
            &format!("({} bytes)", built.bytes.len()),
        ],
    );
}

#[test]
fn dimensions_that_overflow() {
    let cases: [Vec<u64>; 4] = [
        vec![1 << 32, 1 << 32, 1 << 32],
        vec![u64::MAX, 2],
        vec![1 << 63, 1],
        // ggml reads each dimension as an i64: this one is negative there, whatever the product.
        vec![u64::MAX, 0],
    ];
    for dims in cases {
        let mut g = base();
        g.tensors[0].dims = dims.clone();
        let built = g.build();
        rejects_cheaply(
            &built.bytes,
            &[
                &format!("at byte {}", built.tensor_at[0]),
                &format!("tensor \"a.weight\" dimensions {dims:?} overflow"),
            ],
        );
    }
    // The element count fits but the byte count does not (F32: 4 bytes each).
    let mut g = base();
    g.tensors[0].dims = vec![1 << 31, 1 << 31];
    rejects_cheaply(&g.build().bytes, &["tensor \"a.weight\" size overflows"]);
}

#[test]
fn too_many_dimensions() {
    for n in [5u32, 64, u32::MAX] {
        let mut g = base();
        g.tensors[1].n_dims = Some(n);
        g.tensors[1].dims = vec![1; n.min(5) as usize];
        let built = g.build();
        rejects_cheaply(
            &built.bytes,
            &[
                &format!("at byte {}", built.tensor_at[1]),
                &format!("tensor \"b.weight\" has {n} dimensions, at most 4 allowed"),
            ],
        );
    }
}

#[test]
fn offsets_outside_the_data_section() {
    for offset in [64u64, 1 << 40, u64::MAX - 31] {
        let mut g = base();
        g.tensors[1].offset = Some(offset);
        g.tensors[1].data.clear();
        let built = g.build();
        rejects_cheaply(
            &built.bytes,
            &[
                "tensor \"b.weight\"",
                &format!(
                    "data at byte {}",
                    (built.data_offset as u64).saturating_add(offset)
                ),
                "runs past the end of the file",
            ],
        );
    }
}

#[test]
fn overlapping_tensors() {
    for offset in [0u64, 32] {
        let mut g = base().f32_tensor("c.weight", &[8], 3.0);
        g.tensors[2].offset = Some(offset);
        // Make "a" twice as long so that "c" at 32 lands inside it.
        if offset == 32 {
            g.tensors[0].dims = vec![16];
            g.tensors[0].data = support::f32_bytes(&[0.0; 16]);
            g.tensors[1].offset = Some(64);
        }
        let msg = rejects_cheaply(&g.build().bytes, &["overlaps tensor"]);
        assert!(
            msg.contains("\"a.weight\"") && msg.contains("\"c.weight\""),
            "{msg}"
        );
    }
}

#[test]
fn misaligned_offsets() {
    for (align, offset) in [(32u32, 4u64), (32, 33), (64, 32), (4096, 2048)] {
        let mut g = base();
        if align != 32 {
            g = g.alignment(align);
        }
        g.tensors[1].offset = Some(offset);
        let built = g.build();
        rejects_cheaply(
            &built.bytes,
            &[
                &format!("at byte {}", built.tensor_at[1]),
                &format!(
                    "tensor \"b.weight\" (#1) offset {offset} is not a multiple of the alignment {align}"
                ),
            ],
        );
    }
}

#[test]
fn bad_alignment_values() {
    let cases: Vec<(Value, &str)> = vec![
        (Value::U32(0), "0"),
        (Value::U32(3), "3"),
        (Value::U32(48), "48"),
        (Value::U64(32), "32"),
        (Value::String(b"32".to_vec()), "\"32\""),
    ];
    for (value, shown) in cases {
        let built = base().kv("general.alignment", value).build();
        rejects_cheaply(
            &built.bytes,
            &[
                &format!("at byte {}", built.kv_at[2]),
                &format!("general.alignment is {shown}, expected a power of two as u32"),
            ],
        );
    }
}

#[test]
fn duplicate_tensor_names_and_keys() {
    let built = base().f32_tensor("a.weight", &[8], 3.0).build();
    rejects_cheaply(
        &built.bytes,
        &[
            &format!("at byte {}", built.tensor_at[2]),
            "duplicate tensor name \"a.weight\"",
        ],
    );
    let built = base().kv("llama.block_count", Value::U32(3)).build();
    rejects_cheaply(
        &built.bytes,
        &[
            &format!("at byte {}", built.kv_at[2]),
            "duplicate metadata key \"llama.block_count\"",
        ],
    );
}

#[test]
fn many_keys_with_a_duplicate_at_the_end() {
    // 100,000 keys: the duplicate check must not scan the list for each key.
    let mut g = Gguf::new(3);
    for i in 0..100_000 {
        g = g.kv(&format!("k.{i}"), Value::U8(1));
    }
    let ok = g.clone().build();
    assert_eq!(Content::parse(&ok.bytes).unwrap().metadata.len(), 100_000);
    let built = g.kv("k.99999", Value::U8(2)).build();
    assert_rejects(
        &built.bytes,
        &[
            &format!("at byte {}", built.kv_at[100_000]),
            "duplicate metadata key \"k.99999\"",
        ],
    );
}

#[test]
fn bad_bool_bytes() {
    for b in [2u8, 0x80, 0xff] {
        let built = base().kv_raw(b"flag", support::vt::BOOL, vec![b]).build();
        rejects_cheaply(
            &built.bytes,
            &[
                &format!("at byte {}", built.kv_type_at[2] + 4),
                &format!("key \"flag\": bool byte is {b}, expected 0 or 1"),
            ],
        );
        // Inside an array.
        let mut payload = Vec::new();
        put_u32(&mut payload, support::vt::BOOL);
        put_u64(&mut payload, 3);
        payload.extend([1, 0, b]);
        let built = base()
            .kv_raw(b"pattern", support::vt::ARRAY, payload)
            .build();
        rejects_cheaply(
            &built.bytes,
            &[
                &format!("at byte {}", built.kv_type_at[2] + 4 + 12 + 2),
                &format!("key \"pattern\": bool byte is {b}"),
            ],
        );
    }
}

/// An array value nested `depth` levels deep (depth 1: a plain array of u8).
fn nested_payload(depth: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 1..depth {
        put_u32(&mut out, support::vt::ARRAY);
        put_u64(&mut out, 1);
    }
    put_u32(&mut out, support::vt::U8);
    put_u64(&mut out, 1);
    out.push(42);
    out
}

#[test]
fn nested_arrays_too_deep() {
    // Eight levels are accepted, a ninth is not, and a million do not overflow the stack.
    let ok = base()
        .kv_raw(b"deep", support::vt::ARRAY, nested_payload(8))
        .build();
    assert!(Content::parse(&ok.bytes).is_ok());
    for depth in [9usize, 100, 100_000] {
        let built = base()
            .kv_raw(b"deep", support::vt::ARRAY, nested_payload(depth))
            .build();
        let at = built.kv_type_at[2] + 4 + 8 * 12;
        rejects_cheaply(
            &built.bytes,
            &[
                &format!("at byte {at}"),
                "key \"deep\": arrays nested deeper than 8",
            ],
        );
    }
}

#[test]
fn unknown_value_types() {
    for id in [13u32, 255, u32::MAX] {
        let built = base().kv_raw(b"odd", id, vec![0; 8]).build();
        rejects_cheaply(
            &built.bytes,
            &[
                &format!("at byte {}", built.kv_type_at[2]),
                &format!("key \"odd\" has unknown value type {id}"),
            ],
        );
        // As an array's element type.
        let mut payload = Vec::new();
        put_u32(&mut payload, id);
        put_u64(&mut payload, 0);
        let built = base().kv_raw(b"odd", support::vt::ARRAY, payload).build();
        rejects_cheaply(
            &built.bytes,
            &[
                &format!("at byte {}", built.kv_type_at[2] + 4),
                &format!("unknown value type {id}"),
            ],
        );
    }
}

#[test]
fn non_utf8_keys_and_tensor_names() {
    let built = base()
        .kv_raw(&[b'k', 0xff, b'y'], support::vt::U32, vec![0; 4])
        .build();
    rejects_cheaply(
        &built.bytes,
        &[
            &format!("at byte {}", built.kv_at[2]),
            "key is not UTF-8",
            "k\u{fffd}y",
        ],
    );
    let mut g = base();
    g.tensors[1].name = vec![b'w', 0xc3];
    let built = g.build();
    rejects_cheaply(
        &built.bytes,
        &[
            &format!("at byte {}", built.tensor_at[1]),
            "tensor name is not UTF-8",
        ],
    );
}

#[test]
fn rows_not_a_multiple_of_the_block_size() {
    let mut g = base();
    g.tensors[1].type_id = Q4_0;
    g.tensors[1].dims = vec![31, 2];
    let built = g.build();
    rejects_cheaply(
        &built.bytes,
        &[
            &format!("at byte {}", built.tensor_at[1]),
            "tensor \"b.weight\": row length 31 is not a multiple of Q4_0's block size 32",
        ],
    );
}

/// Found by `cargo fuzz run parse`: a quantized tensor with no dimensions made the error
/// message index `dims[0]` and panic.
#[test]
fn fuzz_regression_quantized_scalar() {
    let mut g = base();
    g.tensors[1].type_id = Q8_0;
    g.tensors[1].dims = vec![];
    let built = g.build();
    rejects_cheaply(
        &built.bytes,
        &[
            &format!("at byte {}", built.tensor_at[1]),
            "row length 1 is not a multiple of Q8_0's block size 32",
        ],
    );
}

/// Every input the fuzzer ever crashed on (fuzz/regressions/parse) must now parse or fail
/// cleanly.
#[test]
fn fuzz_regression_inputs() {
    let dir = common::repo().join("fuzz/regressions/parse");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        if let Err(e) = Content::parse(&bytes) {
            assert!(e.to_string().contains("byte"), "{e}");
        }
        n += 1;
    }
    assert!(n > 0, "no regression inputs in {}", dir.display());
}

#[test]
fn data_section_beyond_the_end_of_the_file() {
    let built = base().build();
    let header_end = built.tensor_offset_field_at[1] + 8;
    assert!(
        header_end < built.data_offset,
        "the test needs header padding"
    );
    let msg = parse_err(&built.bytes[..header_end]);
    assert!(
        msg.contains(&format!("at byte {header_end}"))
            && msg.contains(&format!(
                "file ends at byte {header_end} before its data section at {}",
                built.data_offset
            )),
        "{msg}"
    );
}

#[test]
fn raw_value_encodings_agree_with_typed_ones() {
    // Guards the builder: a raw-encoded u32 parses like a typed one.
    let mut payload = Vec::new();
    put_u32(&mut payload, 7);
    let raw = Gguf::new(3).kv_raw(b"n", support::vt::U32, payload).build();
    let typed = Gguf::new(3).kv("n", Value::U32(7)).build();
    assert_eq!(raw.bytes, typed.bytes);
}

// === Split models ===

fn write_split(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let input = write_file(dir, "in.gguf", &tiny_llama(3, 4).build().bytes);
    let model = Model::open(&input).unwrap();
    let tensors = model
        .tensors
        .iter()
        .map(|t| gguf_prune::gguf::OutTensor {
            name: t.info.name.clone(),
            dims: t.info.dims.clone(),
            ggml_type: t.info.ggml_type,
            data: gguf_prune::gguf::TensorData::Bytes(model.data(t).to_vec()),
        })
        .collect();
    let options = gguf_prune::gguf::WriteOptions {
        split_max_bytes: Some(700),
        ..Default::default()
    };
    gguf_prune::gguf::write_model(
        &dir.join("m.gguf"),
        3,
        model.metadata(),
        tensors,
        &options,
        &mut |_, _| {},
    )
    .and_then(|pending| pending.commit())
    .unwrap()
}

fn open_err(path: &std::path::Path) -> String {
    match Model::open(path) {
        Ok(m) => panic!("{} opened with {} shards", path.display(), m.shards.len()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn split_model_errors() {
    let dir = common::workdir();
    let paths = write_split(dir.path());
    let n = paths.len();
    assert!(n >= 3, "{n} shards");
    assert!(Model::open(&paths[0]).is_ok());

    // Opening a later shard names which one it is.
    let msg = open_err(&paths[1]);
    assert!(
        msg.contains("m-00002-of-")
            && msg.contains(&format!("is shard 2 of {n}; open the first shard")),
        "{msg}"
    );

    // A first shard renamed so that the others cannot be found.
    let renamed = dir.path().join("renamed.gguf");
    std::fs::copy(&paths[0], &renamed).unwrap();
    let msg = open_err(&renamed);
    assert!(
        msg.contains("renamed.gguf") && msg.contains(&format!("split.count = {n}")),
        "{msg}"
    );

    // A missing shard is named.
    let moved = dir.path().join("moved");
    std::fs::rename(&paths[2], &moved).unwrap();
    let msg = open_err(&paths[0]);
    assert!(
        msg.contains(paths[2].file_name().unwrap().to_str().unwrap()),
        "{msg}"
    );
    std::fs::rename(&moved, &paths[2]).unwrap();

    // A shard in the wrong place: shard 3's file holding shard 2.
    std::fs::rename(&paths[2], &moved).unwrap();
    std::fs::copy(&paths[1], &paths[2]).unwrap();
    let msg = open_err(&paths[0]);
    assert!(
        msg.contains("expected split.no = 2, found Some(1)"),
        "{msg}"
    );
    std::fs::rename(&moved, &paths[2]).unwrap();
    assert!(Model::open(&paths[0]).is_ok());
}

#[test]
fn split_tensor_count_mismatch_and_tensors_in_two_shards() {
    // Hand-built shards: "a" in both.
    let dir = common::workdir();
    let shard = |no: u16, count: u16, total: i32, names: &[&str]| {
        let mut g = Gguf::new(3)
            .kv("split.no", Value::U16(no))
            .kv("split.count", Value::U16(count))
            .kv("split.tensors.count", Value::I32(total));
        for (i, name) in names.iter().enumerate() {
            g = g.f32_tensor(name, &[8], i as f32);
        }
        g.build().bytes
    };
    write_file(
        dir.path(),
        "x-00001-of-00002.gguf",
        &shard(0, 2, 3, &["a", "b"]),
    );
    write_file(dir.path(), "x-00002-of-00002.gguf", &shard(1, 2, 3, &["a"]));
    let msg = open_err(&dir.path().join("x-00001-of-00002.gguf"));
    assert!(
        msg.contains("x-00002-of-00002.gguf")
            && msg.contains("tensor \"a\" appears in more than one shard"),
        "{msg}"
    );
    write_file(
        dir.path(),
        "x-00002-of-00002.gguf",
        &shard(1, 2, 3, &["c", "d"]),
    );
    let msg = open_err(&dir.path().join("x-00001-of-00002.gguf"));
    assert!(
        msg.contains("split.tensors.count is 3, but the shards hold 4 tensors"),
        "{msg}"
    );
    // split.count that is not an integer.
    let bytes = Gguf::new(3)
        .kv("split.count", Value::String(b"two".to_vec()))
        .build()
        .bytes;
    let path = write_file(dir.path(), "odd.gguf", &bytes);
    let msg = open_err(&path);
    assert!(
        msg.contains("split.count is \"two\", expected an integer"),
        "{msg}"
    );
}

#[test]
fn every_value_type_is_still_accepted() {
    // The hostile cases above must not have made the reader refuse honest files.
    let mut g = Gguf::new(2);
    for (k, v) in every_value_type() {
        g = g.kv(k, v);
    }
    let c = Content::parse(&g.f32_tensor("w", &[2], 0.0).build().bytes).unwrap();
    assert_eq!(c.metadata.len(), every_value_type().len());
    assert_eq!(
        c.metadata
            .get("a.nested")
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

#[test]
fn splits_beyond_llama_cpps_shard_count_are_refused() {
    // split.count is a u16 in llama.cpp: 65,536 shards cannot be named.
    let dir = common::workdir();
    let tensors = (0..65_536)
        .map(|i| gguf_prune::gguf::OutTensor {
            name: format!("t.{i}"),
            dims: vec![8],
            ggml_type: gguf_prune::gguf::GgmlType::F32,
            data: gguf_prune::gguf::TensorData::Bytes(vec![0; 32]),
        })
        .collect();
    let options = gguf_prune::gguf::WriteOptions {
        split_max_bytes: Some(32),
        ..Default::default()
    };
    let err = gguf_prune::gguf::write_model(
        &dir.path().join("m.gguf"),
        3,
        &gguf_prune::gguf::Metadata::new(),
        tensors,
        &options,
        &mut |_, _| {},
    )
    .err()
    .expect("65,536 shards must be refused")
    .to_string();
    assert!(
        err.contains("65536 shards") && err.contains("at most 65535"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn the_writer_refuses_files_its_reader_would_reject() {
    use gguf_prune::gguf::{GgmlType, Metadata, OutTensor, TensorData, WriteOptions};
    let dir = common::workdir();
    let tensor = |name: &str, dims: Vec<u64>, ggml_type: GgmlType, len: usize| OutTensor {
        name: name.to_string(),
        dims,
        ggml_type,
        data: TensorData::Bytes(vec![0; len]),
    };
    let write = |version: u32, meta: &Metadata, tensors: Vec<OutTensor>| {
        gguf_prune::gguf::write_model(
            &dir.path().join("w.gguf"),
            version,
            meta,
            tensors,
            &WriteOptions::default(),
            &mut |_, _| {},
        )
        .err()
        .expect("must be refused")
        .to_string()
    };
    let empty = Metadata::new();
    let ok = || vec![tensor("a", vec![8], GgmlType::F32, 32)];
    for v in [0, 1, 4] {
        let e = write(v, &empty, ok());
        assert!(e.contains(&format!("cannot write GGUF version {v}")), "{e}");
    }
    for (value, shown) in [
        (Value::U64(64), "64 (U64)"),
        (Value::U32(48), "48 (U32)"),
        (Value::U32(0), "0 (U32)"),
    ] {
        let mut meta = Metadata::new();
        meta.set("general.alignment", value);
        let e = write(3, &meta, ok());
        assert!(
            e.contains(&format!(
                "general.alignment is {shown}, expected a power of two"
            )),
            "{e}"
        );
    }
    let mut twice = ok();
    twice.push(tensor("a", vec![8], GgmlType::F32, 32));
    let e = write(3, &empty, twice);
    assert!(e.contains("two output tensors are named \"a\""), "{e}");
    let e = write(
        3,
        &empty,
        vec![tensor("q", vec![32, 2], GgmlType::Q8_0, 34)],
    );
    assert!(
        e.contains("tensor \"q\": 34 bytes of data, but Q8_0 [32, 2] takes 68"),
        "{e}"
    );
    let e = write(3, &empty, vec![tensor("q", vec![31], GgmlType::Q4_0, 18)]);
    assert!(e.contains("takes no whole number of bytes"), "{e}");
    let e = write(3, &empty, vec![tensor("d", vec![1; 5], GgmlType::F32, 4)]);
    assert!(e.contains("has 5 dimensions, at most 4"), "{e}");
    // Nothing was written, not even a temporary file.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // Unknown types are carried by length, whatever their dimensions say.
    let unknown = vec![tensor("u", vec![3], GgmlType::Unknown(1000), 7)];
    gguf_prune::gguf::write_model(
        &dir.path().join("u.gguf"),
        3,
        &empty,
        unknown,
        &WriteOptions::default(),
        &mut |_, _| {},
    )
    .and_then(|p| p.commit())
    .unwrap();
    let f = GgufFile::open(dir.path().join("u.gguf")).unwrap();
    assert_eq!(f.content.tensors[0].ggml_type, GgmlType::Unknown(1000));
}

// === One reading of `blk.N` ===

#[test]
fn a_zero_padded_block_number_is_not_a_block_to_any_path() {
    // llama.cpp names block tensors with %d, so `blk.01.x` is not block 1's: prune leaves it
    // alone, importance-matrix renumbering too, and the block checks the forward pass and
    // verification run do not count it (so a 1-block model holding it is still one block).
    use gguf_prune::prune::{renumber, PrunePlan, Renamed};
    use gguf_prune::quant::imatrix::{ImatrixData, ImatrixEntry};
    let name = "blk.01.x";
    assert_eq!(gguf_prune::blocks::block_index(name), None);
    assert_eq!(
        gguf_prune::blocks::block_index("blk.1.x"),
        Some(1),
        "control"
    );

    let plan = PrunePlan::new(3, &[0]).unwrap();
    assert_eq!(renumber(name, &plan), Renamed::Unchanged);
    assert_eq!(
        renumber("blk.1.x", &plan),
        Renamed::Renumbered("blk.0.x".into()),
        "control"
    );

    let entry = || ImatrixEntry {
        sums: vec![1.0],
        counts: vec![1],
    };
    let mut entries = std::collections::BTreeMap::new();
    entries.insert(name.to_string(), entry());
    entries.insert("blk.1.x".to_string(), entry());
    let im = ImatrixData::new(entries, Vec::new(), 1, 1).after_layer_removal(&[0]);
    assert!(im.get(name).is_some(), "blk.01.x renamed");
    assert!(
        im.get("blk.0.x").is_some() && im.get("blk.1.x").is_none(),
        "control"
    );

    let dir = common::workdir();
    let mut g = tiny_llama(3, 1);
    g = g.f32_tensor("blk.01.attn_norm.weight", &[8], 0.0);
    let model = Model::open(write_file(dir.path(), "padded.gguf", &g.build().bytes)).unwrap();
    let n = gguf_prune::verify::check_structure(&model)
        .unwrap()
        .block_count;
    assert_eq!(n, Some(1));
    let g = tiny_llama(3, 1).f32_tensor("blk.1.attn_norm.weight", &[8], 0.0);
    let model = Model::open(write_file(dir.path(), "real.gguf", &g.build().bytes)).unwrap();
    let e = gguf_prune::verify::check_structure(&model)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("belongs to block 1, but block_count is 1"),
        "control: {e}"
    );
}

// === Opening a model for the forward pass ===

#[test]
fn forward_open_checks_sizes_before_allocating_by_them() {
    // Block counts, widths and head counts from the file are checked against the tensors that
    // exist before anything is sized by them: no single allocation beyond a few MiB, and an
    // error naming the key (the file holds a few KiB of tensors).
    let dir = common::workdir();
    let with = |key: &str, v: Value| {
        let mut g = tiny_llama(3, 4).kv("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5));
        g.kvs.retain(|(k, _)| k != key.as_bytes());
        g.kv(key, v)
    };
    let cases = [
        ("llama.block_count", Value::U32(u32::MAX), "at most 65536"),
        ("llama.block_count", Value::U32(1 << 24), "at most 65536"),
        (
            "llama.block_count",
            Value::U32(3),
            "belongs to block 3, but block_count is 3",
        ),
        (
            "llama.embedding_length",
            Value::U32(1 << 31),
            "expected [2147483648, *]",
        ),
        (
            "llama.attention.head_count",
            Value::U32(u32::MAX),
            "does not divide embedding_length 8",
        ),
        (
            "llama.attention.key_length",
            Value::U32(0),
            "\"llama.attention.key_length\" is 0",
        ),
    ];
    for (i, (key, v, needle)) in cases.into_iter().enumerate() {
        let path = write_file(
            dir.path(),
            &format!("{i}.gguf"),
            &with(key, v).build().bytes,
        );
        let model = Model::open(&path).unwrap();
        LARGEST.with(|c| c.set(0));
        let result = gguf_prune::forward::Forward::new(&model).map(|_| ());
        let largest = LARGEST.with(|c| c.get());
        let msg = result.expect_err(key).to_string();
        assert!(msg.contains(needle), "{key}: {msg}");
        assert!(
            largest < 4 << 20,
            "{key}: allocated {largest} bytes at once ({msg})"
        );
    }
    // Control: unedited, the tiny model passes every check above and stops at its weights,
    // which are not llama-shaped (its norms hold 4 values, not 8).
    let path = write_file(
        dir.path(),
        "control.gguf",
        &with("x", Value::U8(0)).build().bytes,
    );
    let msg = gguf_prune::forward::Forward::new(&Model::open(&path).unwrap())
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("\"blk.0.ffn_norm.weight\" has dims [4], expected [8]"),
        "{msg}"
    );
}

#[test]
fn forward_fuzz_seeds_run_through_every_block() {
    // The `forward` fuzz target's seeds must get past validation, or the fuzzer would only ever
    // explore the error paths (and this guards the validation against refusing valid models).
    let dir = common::repo().join("fuzz/corpus/forward");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let model = Model::open(&path).unwrap();
        gguf_prune::verify::check_structure(&model).unwrap();
        let fw = gguf_prune::forward::Forward::new(&model)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (x, _) = fw
            .run(
                &[vec![0, 1, 2, 3]],
                Default::default(),
                &mut |_, _| Ok(()),
                &mut |_| {},
            )
            .unwrap();
        assert!(x.data.iter().all(|v| v.is_finite()));
        n += 1;
    }
    assert!(n >= 5, "{n} seeds in {}", dir.display());
}
