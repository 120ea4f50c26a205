//! Multiple-choice tasks (ARC, MMLU, TruthfulQA, HellaSwag converted) in llama-perplexity's
//! `--multiple-choice` binary format, little-endian:
//!
//! ```text
//! u32 n_task
//! u32 offset[n_task]            byte offset of each task from the start of the file
//! per task:
//!   string question             u32 length, then the bytes
//!   answers mc1                 u32 n (at most 100), n strings, n i32 labels (1 = right, 0 = wrong)
//!   answers mc2                 the same layout (read and not used, as in llama.cpp)
//! ```
//!
//! Each answer is scored as in HellaSwag (`question + " " + answer`, mean log-probability after
//! the shared prefix, the first token's from the prefix's last row), in f32 as llama.cpp does; a
//! task is right when the best answer's label is 1. All tasks are read in sequence (the offsets
//! are not used then); a subset is drawn at random (seed 1) and read at the drawn offsets.

use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

use super::{prefix_task, select, Kind, TaskSet};

/// llama.cpp's cap on answers per task.
pub const MAX_ANSWERS: u32 = 100;

/// One task as the file gives it (the mc1 answers; mc2 is skipped).
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub question: String,
    pub answers: Vec<String>,
    pub labels: Vec<i32>,
}

/// A byte reader that names what it was reading when the bytes run out.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8]> {
        if self.bytes.len() - self.at < n {
            return Err(Error::Parse {
                offset: self.at as u64,
                what: format!(
                    "{what}: needs {n} bytes, {} left (truncated file?)",
                    self.bytes.len() - self.at
                ),
            });
        }
        self.at += n;
        Ok(&self.bytes[self.at - n..self.at])
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.u32(what)? as usize;
        let at = self.at;
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| Error::Parse {
            offset: at as u64,
            what: format!("{what} is not UTF-8"),
        })
    }

    /// One answer list (mc1 or mc2): answers and labels.
    fn answers(&mut self, what: &str) -> Result<(Vec<String>, Vec<i32>)> {
        let at = self.at;
        let n = self.u32(&format!("{what}'s answer count"))?;
        if n > MAX_ANSWERS {
            return Err(Error::Parse {
                offset: at as u64,
                what: format!("{what} has {n} answers, more than llama.cpp's {MAX_ANSWERS}"),
            });
        }
        let answers = (0..n)
            .map(|k| self.string(&format!("{what}'s answer {k}")))
            .collect::<Result<Vec<_>>>()?;
        let labels = (0..n)
            .map(|k| Ok(self.u32(&format!("{what}'s label {k}"))? as i32))
            .collect::<Result<Vec<_>>>()?;
        Ok((answers, labels))
    }

    fn task(&mut self, index: usize) -> Result<Entry> {
        let what = format!("task {index}");
        let question = self.string(&format!("{what}'s question"))?;
        let (answers, labels) = self.answers(&format!("{what} mc1"))?;
        self.answers(&format!("{what} mc2"))?;
        if question.is_empty() || answers.is_empty() || answers.iter().any(String::is_empty) {
            return Err(task_error(format!(
                "{what}: an empty question, no answers or an empty answer"
            )));
        }
        if let Some((k, l)) = labels.iter().enumerate().find(|(_, &l)| l != 0 && l != 1) {
            return Err(task_error(format!(
                "{what}: label {l} of answer {k} is out of range (0 = wrong, 1 = right)"
            )));
        }
        if !labels.contains(&1) {
            return Err(task_error(format!(
                "{what}: no answer is labelled right (1)"
            )));
        }
        Ok(Entry {
            question,
            answers,
            labels,
        })
    }
}

/// A fault in the file's tasks (a binary file: no line to name).
fn task_error(what: String) -> Error {
    Error::TaskFile { line: None, what }
}

/// Reads the tasks llama-perplexity scores: all in file order when `count` is `None` or not below
/// the file's task count, else `count` drawn at random, each read at its offset. Returns the
/// tasks with their file indices, and the file's task count.
pub fn read(bytes: &[u8], count: Option<usize>) -> Result<(Vec<(usize, Entry)>, usize)> {
    let mut r = Reader { bytes, at: 0 };
    let n_task = r.u32("the task count")? as usize;
    if n_task == 0 {
        return Err(task_error("the file holds no tasks".into()));
    }
    let offsets = (0..n_task)
        .map(|i| r.u32(&format!("task {i}'s offset")))
        .collect::<Result<Vec<_>>>()?;
    let order = select::float_pick_order(n_task, count);
    if order.len() == n_task {
        let tasks = (0..n_task)
            .map(|i| Ok((i, r.task(i)?)))
            .collect::<Result<Vec<_>>>()?;
        return Ok((tasks, n_task));
    }
    let tasks = order
        .into_iter()
        .map(|i| {
            let at = offsets[i] as usize;
            if at > bytes.len() {
                return Err(Error::Parse {
                    offset: (4 + 4 * i) as u64,
                    what: format!(
                        "task {i}'s offset {at} is past the end of the file ({} bytes)",
                        bytes.len()
                    ),
                });
            }
            let mut r = Reader { bytes, at };
            Ok((i, r.task(i)?))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((tasks, n_task))
}

/// Tokenizes the tasks with `tok`, refusing any that needs more than `max_tokens`.
pub fn prepare(
    entries: &[(usize, Entry)],
    in_file: usize,
    tok: &Tokenizer,
    max_tokens: usize,
) -> Result<TaskSet> {
    let tasks = entries
        .iter()
        .map(|(index, e)| {
            let correct = e.labels.iter().map(|&l| l == 1).collect();
            prefix_task(*index, &e.question, &e.answers, correct, tok, max_tokens)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(TaskSet {
        kind: Kind::MultipleChoice,
        tasks,
        in_file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(s: &str) -> Vec<u8> {
        let mut v = (s.len() as u32).to_le_bytes().to_vec();
        v.extend_from_slice(s.as_bytes());
        v
    }

    fn task(q: &str, answers: &[&str], labels: &[i32]) -> Vec<u8> {
        let mut v = string(q);
        v.extend((answers.len() as u32).to_le_bytes());
        answers.iter().for_each(|a| v.extend(string(a)));
        labels.iter().for_each(|l| v.extend(l.to_le_bytes()));
        v.extend(0u32.to_le_bytes());
        v
    }

    fn file(tasks: &[Vec<u8>]) -> Vec<u8> {
        let mut v = (tasks.len() as u32).to_le_bytes().to_vec();
        let mut at = 4 + 4 * tasks.len();
        for t in tasks {
            v.extend((at as u32).to_le_bytes());
            at += t.len();
        }
        tasks.iter().for_each(|t| v.extend(t));
        v
    }

    #[test]
    fn reads_all_or_a_drawn_subset() {
        let tasks: Vec<_> = (0..5)
            .map(|i| task(&format!("q{i}"), &["a", "b"], &[0, 1]))
            .collect();
        let bytes = file(&tasks);
        let (all, n) = read(&bytes, None).unwrap();
        assert_eq!((all.len(), n), (5, 5));
        assert_eq!(all[3].1.question, "q3");
        let (some, _) = read(&bytes, Some(3)).unwrap();
        let picked: Vec<usize> = some.iter().map(|t| t.0).collect();
        assert_eq!(picked, select::float_pick_order(5, Some(3)));
        assert!(some.iter().all(|(i, e)| e.question == format!("q{i}")));
    }

    #[test]
    fn refuses_truncated_files_and_bad_labels() {
        let bytes = file(&[task("q", &["a", "b"], &[0, 1])]);
        let err = read(&bytes[..bytes.len() - 3], None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("truncated"), "{err}");
        let err = read(&file(&[task("q", &["a", "b"], &[0, 2])]), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("label 2 of answer 1 is out of range"), "{err}");
        assert!(read(&file(&[task("q", &["a"], &[0])]), None).is_err());
        assert!(read(&0u32.to_le_bytes(), None).is_err());
    }
}
