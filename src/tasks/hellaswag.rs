//! HellaSwag in llama-perplexity's `--hellaswag` format: 6 lines per task (the context, the index
//! 0-3 of the right ending, the four endings). Each ending is scored as the mean log-probability
//! of its tokens after the context (`context + " " + ending`, tokenized whole); the task is right
//! when the best-scoring ending is the labelled one (llama.cpp's `acc_norm`).
//!
//! llama.cpp always draws the tasks at random (seed 1), even when it uses all of them, and uses
//! 400 by default ([`DEFAULT_TASKS`]); [`super::select::hellaswag_order`] reproduces the order.

use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

use super::{prefix_task, prompt_lines, select, Kind, TaskSet};

/// Lines per task.
pub const LINES_PER_TASK: usize = 6;
/// Endings per task.
pub const ENDINGS: usize = 4;
/// llama-perplexity's default `--hellaswag-tasks`.
pub const DEFAULT_TASKS: usize = 400;

/// One task as the file gives it.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub context: String,
    pub gold: usize,
    pub endings: [String; ENDINGS],
}

/// Reads every task of a HellaSwag file, refusing a line count that is not a multiple of 6 or a
/// label that is not 0-3 (llama.cpp would stop, or crash on a non-number).
pub fn parse(text: &str) -> Result<Vec<Entry>> {
    let lines = prompt_lines(text);
    if lines.is_empty() || !lines.len().is_multiple_of(LINES_PER_TASK) {
        return Err(Error::TaskFile {
            line: None,
            what: format!(
                "{} lines, not a positive multiple of {LINES_PER_TASK} (context, label, 4 endings per task)",
                lines.len()
            ),
        });
    }
    lines
        .chunks_exact(LINES_PER_TASK)
        .enumerate()
        .map(|(i, l)| {
            let gold = l[1]
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|&g| g < ENDINGS)
                .ok_or_else(|| Error::TaskFile {
                    line: Some(i * LINES_PER_TASK + 2),
                    what: format!("task {i}'s label {:?} is not an ending index 0-3", l[1]),
                })?;
            Ok(Entry {
                context: l[0].to_string(),
                gold,
                endings: [2, 3, 4, 5].map(|k| l[k].to_string()),
            })
        })
        .collect()
}

/// Picks `count` tasks (llama.cpp's default [`DEFAULT_TASKS`] when `None`) in llama.cpp's random
/// order, tokenizes them with `tok` and refuses any that needs more than `max_tokens`.
pub fn prepare(
    entries: &[Entry],
    count: Option<usize>,
    tok: &Tokenizer,
    max_tokens: usize,
) -> Result<TaskSet> {
    let order = select::hellaswag_order(entries.len(), count.unwrap_or(DEFAULT_TASKS));
    let tasks = order
        .into_iter()
        .map(|index| {
            let e = &entries[index];
            let correct = (0..ENDINGS).map(|k| k == e.gold).collect();
            prefix_task(index, &e.context, &e.endings, correct, tok, max_tokens)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(TaskSet {
        kind: Kind::HellaSwag,
        tasks,
        in_file: entries.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(label: &str) -> String {
        format!("Ctx: a thing\n{label}\nx\ny\nz\nw\n")
    }

    #[test]
    fn reads_tasks_and_refuses_bad_ones() {
        let e = parse(&(task("2") + &task("0"))).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].gold, 2);
        assert_eq!(e[1].endings[3], "w");
        let err = parse("a\n1\nb\nc\nd\n").unwrap_err().to_string();
        assert!(
            err.contains("5 lines, not a positive multiple of 6"),
            "{err}"
        );
        let err = parse(&task("4")).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("\"4\""), "{err}");
        assert!(parse(&task("x")).is_err());
        assert!(parse("").is_err());
    }
}
