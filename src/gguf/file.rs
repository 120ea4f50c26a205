//! Opening GGUF files: one memory map per file, and split models read as one.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::read::{Content, TensorInfo};
use super::value::Metadata;
use super::write::TensorData;
use crate::error::{Error, Result};

/// `split.no`, `split.count`, `split.tensors.count`: llama.cpp's `LLM_KV_SPLIT_*`.
pub const SPLIT_NO_KEY: &str = "split.no";
pub const SPLIT_COUNT_KEY: &str = "split.count";
pub const SPLIT_TENSORS_COUNT_KEY: &str = "split.tensors.count";

/// One GGUF file, memory-mapped read-only, with its parsed header.
pub struct GgufFile {
    path: PathBuf,
    file: File,
    map: Mmap,
    pub content: Content,
}

impl GgufFile {
    /// Opens and parses `path`. The file is only ever opened for reading.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        let path = path.as_ref().to_path_buf();
        // A named pipe is refused, not waited on; a folder or device cannot be mapped.
        let (file, len) = crate::limits::open_regular(&path)?;
        if len == 0 {
            return Err(Error::InFile {
                path,
                source: Box::new(Error::Parse {
                    offset: 0,
                    what: "file is empty".into(),
                }),
            });
        }
        // SAFETY: the map is read-only and private to this process. Another process truncating
        // or rewriting the file while we hold it would be undefined behaviour, the same contract
        // llama.cpp's own loader accepts; we never write to our inputs.
        let map = unsafe { Mmap::map(&file) }.map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let content = parse_in(&path, &map)?;
        Ok(GgufFile {
            path,
            file,
            map,
            content,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file, for streaming copies of tensor ranges.
    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn len(&self) -> u64 {
        self.map.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The whole file as bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Absolute file offset of a tensor's data.
    pub fn data_start(&self, info: &TensorInfo) -> u64 {
        self.content.data_offset + info.offset
    }

    /// The tensor's bytes as writer input: a file range streamed by the kernel, never read
    /// into memory.
    pub fn copy_of(&self, info: &TensorInfo) -> TensorData<'_> {
        TensorData::Copy {
            file: &self.file,
            offset: self.data_start(info),
            len: info.size,
        }
    }

    /// A tensor's bytes (the range was checked when the file was parsed).
    pub fn data(&self, info: &TensorInfo) -> &[u8] {
        tensor_bytes(&self.map, &self.content, info)
    }
}

/// Parses the GGUF header held in `bytes`, the whole file at `path`; errors name the file.
pub fn parse_in(path: &Path, bytes: &[u8]) -> Result<Content> {
    Content::parse(bytes).map_err(|e| Error::InFile {
        path: path.to_path_buf(),
        source: Box::new(e),
    })
}

/// A tensor's bytes within `bytes`, the whole file `content` was parsed from (which checked the
/// range).
pub fn tensor_bytes<'b>(bytes: &'b [u8], content: &Content, info: &TensorInfo) -> &'b [u8] {
    let start = (content.data_offset + info.offset) as usize;
    &bytes[start..start + info.size as usize]
}

/// A tensor of a [`Model`]: its header entry and the shard that holds it.
#[derive(Debug, Clone)]
pub struct ModelTensor {
    pub shard: usize,
    pub info: TensorInfo,
}

/// A model: one GGUF file, or every shard of a split model (`name-00001-of-00003.gguf`).
pub struct Model {
    pub shards: Vec<GgufFile>,
    pub tensors: Vec<ModelTensor>,
}

impl Model {
    /// Opens a model. Given the first shard of a split model, opens all its shards.
    pub fn open(path: impl AsRef<Path>) -> Result<Model> {
        let first = GgufFile::open(path.as_ref())?;
        let count = match first.content.metadata.get(SPLIT_COUNT_KEY) {
            None => 1,
            Some(v) => v.to_u64().ok_or_else(|| {
                in_file(
                    &first,
                    Error::SplitCountType {
                        key: SPLIT_COUNT_KEY,
                        shown: v.display(4),
                    },
                )
            })?,
        };
        let shards = open_shards(first, count)?;
        let tensors = index_tensors(&shards)?;
        if let Some(v) = shards[0].content.metadata.get(SPLIT_TENSORS_COUNT_KEY) {
            if v.to_u64() != Some(tensors.len() as u64) {
                return Err(in_file(
                    &shards[0],
                    Error::SplitTensorCount {
                        key: SPLIT_TENSORS_COUNT_KEY,
                        shown: v.display(4),
                        held: tensors.len(),
                    },
                ));
            }
        }
        Ok(Model { shards, tensors })
    }

    /// The model's metadata: the first shard's.
    pub fn metadata(&self) -> &Metadata {
        &self.shards[0].content.metadata
    }

    pub fn path(&self) -> &Path {
        self.shards[0].path()
    }

    pub fn tensor(&self, name: &str) -> Option<&ModelTensor> {
        self.tensors.iter().find(|t| t.info.name == name)
    }

    /// A tensor's bytes as writer input, wherever its shard is (see [`GgufFile::copy_of`]).
    pub fn copy_of(&self, tensor: &ModelTensor) -> TensorData<'_> {
        self.shards[tensor.shard].copy_of(&tensor.info)
    }

    /// A tensor's bytes, wherever its shard is.
    pub fn data(&self, tensor: &ModelTensor) -> &[u8] {
        self.shards[tensor.shard].data(&tensor.info)
    }

    /// Total bytes of every shard.
    pub fn file_size(&self) -> u64 {
        self.shards.iter().map(GgufFile::len).sum()
    }
}

/// The shards of a model whose first file is `first` and whose `split.count` is `count`: the
/// first must be shard 0 and named so that the others can be found, each with its number.
fn open_shards(first: GgufFile, count: u64) -> Result<Vec<GgufFile>> {
    let mut shards = vec![first];
    if count > 1 {
        let no = shards[0]
            .content
            .metadata
            .get(SPLIT_NO_KEY)
            .and_then(|v| v.to_u64())
            .unwrap_or(0);
        if no != 0 {
            return Err(in_file(&shards[0], Error::NotFirstShard { no, count }));
        }
        let prefix = split_prefix(shards[0].path(), 0, count).ok_or_else(|| {
            in_file(
                &shards[0],
                Error::SplitName {
                    key: SPLIT_COUNT_KEY,
                    count,
                },
            )
        })?;
        for i in 1..count {
            let shard = GgufFile::open(split_path(&prefix, i, count))?;
            let shard_no = shard
                .content
                .metadata
                .get(SPLIT_NO_KEY)
                .and_then(|v| v.to_u64());
            if shard_no != Some(i) {
                return Err(in_file(
                    &shard,
                    Error::ShardNumber {
                        key: SPLIT_NO_KEY,
                        expected: i,
                        found: shard_no,
                    },
                ));
            }
            shards.push(shard);
        }
    }
    Ok(shards)
}

/// Every tensor of the shards, in order, each name once.
fn index_tensors(shards: &[GgufFile]) -> Result<Vec<ModelTensor>> {
    let mut tensors = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, shard) in shards.iter().enumerate() {
        for info in &shard.content.tensors {
            if !seen.insert(info.name.clone()) {
                return Err(in_file(
                    shard,
                    Error::TensorInTwoShards {
                        name: info.name.clone(),
                    },
                ));
            }
            tensors.push(ModelTensor {
                shard: i,
                info: info.clone(),
            });
        }
    }
    Ok(tensors)
}

/// `e` as an error of `file`.
fn in_file(file: &GgufFile, e: Error) -> Error {
    Error::InFile {
        path: file.path().to_path_buf(),
        source: Box::new(e),
    }
}

/// The path of shard `index` (from 0) of `count`: `{prefix}-{index+1:05}-of-{count:05}.gguf`,
/// as llama.cpp's `llama_split_path` spells it.
pub fn split_path(prefix: &Path, index: u64, count: u64) -> PathBuf {
    let mut name = prefix.as_os_str().to_os_string();
    name.push(format!("-{:05}-of-{:05}.gguf", index + 1, count));
    PathBuf::from(name)
}

/// The prefix of a shard path, if it ends the way [`split_path`] writes it.
pub fn split_prefix(path: &Path, index: u64, count: u64) -> Option<PathBuf> {
    let text = path.to_str()?;
    let suffix = format!("-{:05}-of-{:05}.gguf", index + 1, count);
    text.strip_suffix(&suffix)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}
