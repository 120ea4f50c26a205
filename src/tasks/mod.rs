//! Task accuracy as llama.cpp users measure it: `llama-perplexity --hellaswag`, `--winogrande` and
//! `--multiple-choice` (llama.cpp `tools/perplexity/perplexity.cpp`), on the same files, the same
//! tasks in the same order, with the same scores, so accuracies from `gguf-prune eval` and from
//! llama.cpp can be put side by side and a pruned model's "retained performance" measured.
//!
//! Each format module reads its file, picks the tasks as llama.cpp picks them ([`select`]) and
//! tokenizes every choice into a [`Task`]: one token sequence per choice and the log-probabilities
//! ([`Request`]) its score averages. [`score`] runs the model over the sequences and picks a
//! choice per task. What llama.cpp shares between choices (the common prefix's last row) is
//! shared here too, including WinoGrande's use of the first choice's last row for the second
//! choice's first token when the whole choice is scored (a known quirk, marked FIXME in llama.cpp).

pub mod hellaswag;
pub mod multiple_choice;
pub mod select;
pub mod winogrande;

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::eval::metrics;
use crate::forward::LogitsSource;
use crate::tokenizer::Tokenizer;

/// The three task formats of llama-perplexity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Kind {
    #[serde(rename = "hellaswag")]
    HellaSwag,
    #[serde(rename = "winogrande")]
    WinoGrande,
    #[serde(rename = "multiple-choice")]
    MultipleChoice,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::HellaSwag => "HellaSwag",
            Kind::WinoGrande => "WinoGrande",
            Kind::MultipleChoice => "multiple-choice",
        }
    }
}

/// How one log-probability is computed from a row of logits; llama.cpp uses two variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogProbKind {
    /// `log(softmax(row)[t])`: the exponentials summed in f64, the probability rounded to f32,
    /// then its f32 logarithm (the first ending token in HellaSwag and multiple-choice).
    Softmax,
    /// `row[t] - max - log(sum exp(row - max))` with the sum in f32 (`compute_logprobs`).
    Direct,
}

/// One log-probability a task's score needs: the row after position `pos` of choice `seq`'s
/// sequence, evaluated at token `target`.
#[derive(Clone, Copy, Debug)]
pub struct Request {
    pub seq: usize,
    pub pos: usize,
    pub target: u32,
    pub kind: LogProbKind,
}

/// A task ready to score.
#[derive(Clone, Debug)]
pub struct Task {
    /// 0-based index of the task in its file.
    pub index: usize,
    /// Token ids (with BOS when the model adds it) of each choice's full text.
    pub seqs: Vec<Vec<u32>>,
    /// Which choices count as right.
    pub correct: Vec<bool>,
    /// The log-probabilities to compute, in the order llama.cpp sums them.
    pub requests: Vec<Request>,
    /// Per choice, the requests whose mean is its score.
    pub spans: Vec<Range<usize>>,
}

impl Task {
    /// Tokens llama.cpp puts in its batch for this task: the shared prefix once, then each
    /// choice's remaining tokens.
    pub fn required_tokens(&self) -> usize {
        let cp = common_prefix(&self.seqs);
        cp + self.seqs.iter().map(|s| s.len() - cp).sum::<usize>()
    }
}

/// Tokens at the start that all sequences share (over the shortest one).
pub fn common_prefix(seqs: &[Vec<u32>]) -> usize {
    let min = seqs.iter().map(Vec::len).min().unwrap_or(0);
    (0..min)
        .take_while(|&k| seqs.iter().all(|s| s[k] == seqs[0][k]))
        .count()
}

/// The HellaSwag and multiple-choice scoring of a task whose choices are `seqs`: per choice, the
/// probability of its first token after the shared prefix (from the prefix's last row, the first
/// choice's), then the log-probability of each next token to the end; the score is their mean.
/// `index` names the task in errors.
pub fn prefix_requests(
    seqs: &[Vec<u32>],
    index: usize,
) -> Result<(Vec<Request>, Vec<Range<usize>>)> {
    let cp = common_prefix(seqs);
    if cp == 0 {
        return Err(Error::UnscorableTask {
            index,
            why: "the choices share no first token, so there is no context to score them after"
                .into(),
        });
    }
    if let Some(s) = seqs.iter().position(|s| s.len() == cp) {
        return Err(Error::UnscorableTask {
            index,
            why: format!("choice {s} adds no token that the other choices do not share"),
        });
    }
    let mut requests = Vec::new();
    let mut spans = Vec::with_capacity(seqs.len());
    for (s, seq) in seqs.iter().enumerate() {
        let start = requests.len();
        requests.push(Request {
            seq: 0,
            pos: cp - 1,
            target: seq[cp],
            kind: LogProbKind::Softmax,
        });
        for j in cp..seq.len() - 1 {
            requests.push(Request {
                seq: s,
                pos: j,
                target: seq[j + 1],
                kind: LogProbKind::Direct,
            });
        }
        spans.push(start..requests.len());
    }
    Ok((requests, spans))
}

/// A HellaSwag or multiple-choice task: each choice appended to the context after a space
/// (`context + " " + choice`, tokenized whole), scored by [`prefix_requests`]; refused when it
/// needs more than `max_tokens`.
pub fn prefix_task(
    index: usize,
    context: &str,
    choices: &[String],
    correct: Vec<bool>,
    tok: &Tokenizer,
    max_tokens: usize,
) -> Result<Task> {
    let seqs = choices
        .iter()
        .map(|c| tok.encode(&format!("{context} {c}"), true))
        .collect::<Result<Vec<_>>>()?;
    let (requests, spans) = prefix_requests(&seqs, index)?;
    let task = Task {
        index,
        correct,
        seqs,
        requests,
        spans,
    };
    check_fits(&task, max_tokens)?;
    Ok(task)
}

/// A set of tasks of one kind, ready to score.
#[derive(Clone, Debug)]
pub struct TaskSet {
    pub kind: Kind,
    pub tasks: Vec<Task>,
    /// Tasks in the file (before any selection).
    pub in_file: usize,
}

/// One task's outcome.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TaskChoice {
    /// 0-based index of the task in its file.
    pub task: usize,
    /// The chosen choice (0-based; WinoGrande's `1`/`2` are `0`/`1` here).
    pub choice: usize,
    /// The right choice (the first one marked right, for multiple-choice).
    pub gold: usize,
    pub correct: bool,
    /// Each choice's score (mean log-probability).
    pub scores: Vec<f64>,
}

/// Accuracy over a task set, with llama.cpp's uncertainty.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Accuracy {
    pub kind: Kind,
    /// Tasks scored.
    pub tasks: usize,
    pub correct: usize,
    /// `correct / tasks`.
    pub accuracy: f64,
    /// Standard error `sqrt(p (1 - p) / (tasks - 1))` (0 for one task).
    pub accuracy_err: f64,
    /// Share of tasks a uniform random pick gets right (`tasks / total choices`).
    pub random_chance: f64,
    pub choices: Vec<TaskChoice>,
}

impl Accuracy {
    /// The 95% Wilson score interval llama-perplexity prints for HellaSwag.
    pub fn wilson95(&self) -> (f64, f64) {
        let n = self.tasks as f64;
        let p = self.accuracy;
        let za = 1.95996398454f64;
        let z = za * za / n;
        let cnf = z * (n * (4.0 * p * (1.0 - p) + z)).sqrt() / (za + za);
        (
            (p + z * 0.5 - cnf) / (1.0 + z),
            (p + z * 0.5 + cnf) / (1.0 + z),
        )
    }

    /// The final line llama-perplexity prints (in percent), computed in its precision: f64 for
    /// HellaSwag (the running line with its Wilson interval), f32 for the other two.
    pub fn summary_line(&self) -> String {
        let n = self.tasks;
        match self.kind {
            Kind::HellaSwag => {
                let (a, b) = self.wilson95();
                format!(
                    "HellaSwag score ({n} tasks): {:.4} +/- {:.4}, 95% interval [{:.4}%, {:.4}%]",
                    100.0 * self.accuracy,
                    100.0 * self.accuracy_err,
                    100.0 * a,
                    100.0 * b
                )
            }
            Kind::WinoGrande => {
                let (p, sigma) = f32_estimate(self.correct, n);
                format!("Final Winogrande score({n} tasks): {p:.4} +/- {sigma:.4}")
            }
            Kind::MultipleChoice => {
                let (p, sigma) = f32_estimate(self.correct, n);
                let (r, rs) = f32_estimate_p((self.random_chance) as f32, n);
                format!("Final result: {p:.4} +/- {sigma:.4}\nRandom chance: {r:.4} +/- {rs:.4}")
            }
        }
    }
}

/// llama.cpp's f32 percentage and error for `correct` of `n`.
fn f32_estimate(correct: usize, n: usize) -> (f32, f32) {
    f32_estimate_p(1.0f32 * correct as f32 / n as f32, n)
}

fn f32_estimate_p(p: f32, n: usize) -> (f32, f32) {
    let sigma = if n > 1 {
        (p * (1.0 - p) / (n - 1) as f32).sqrt()
    } else {
        0.0
    };
    (100.0 * p, 100.0 * sigma)
}

/// How to run a task set.
#[derive(Clone, Debug)]
pub struct ScoreOptions {
    /// Sequences handed to the model per call (more lets it batch; fewer gives finer progress).
    pub seqs_per_call: usize,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        ScoreOptions { seqs_per_call: 32 }
    }
}

/// Progress after each task: the outcome and the running accuracy.
pub struct TaskDone<'a> {
    /// 1-based number of tasks done.
    pub done: usize,
    pub total: usize,
    pub correct: usize,
    pub choice: &'a TaskChoice,
}

/// Scores every task of `set` with `source`, as llama-perplexity does.
pub fn score(
    source: &mut dyn LogitsSource,
    set: &TaskSet,
    opts: &ScoreOptions,
    progress: &mut dyn FnMut(&TaskDone<'_>),
) -> Result<Accuracy> {
    let n_vocab = source.n_vocab();
    let total = set.tasks.len();
    let mut choices = Vec::with_capacity(total);
    let mut correct = 0;
    let mut i = 0;
    while i < total {
        crate::interrupt::check()?;
        let mut j = i + 1;
        let mut n_seqs = set.tasks[i].seqs.len();
        while j < total && n_seqs + set.tasks[j].seqs.len() <= opts.seqs_per_call.max(1) {
            n_seqs += set.tasks[j].seqs.len();
            j += 1;
        }
        let group = &set.tasks[i..j];
        let results = log_probs(source, group, n_vocab)?;
        for (task, values) in group.iter().zip(results) {
            let choice = choose(set.kind, task, &values);
            correct += choice.correct as usize;
            choices.push(choice);
            progress(&TaskDone {
                done: choices.len(),
                total,
                correct,
                choice: choices.last().expect("just pushed"),
            });
        }
        i = j;
    }
    let n_answers: usize = set.tasks.iter().map(|t| t.seqs.len()).sum();
    Ok(accuracy(set.kind, correct, choices, n_answers))
}

fn accuracy(kind: Kind, correct: usize, choices: Vec<TaskChoice>, n_answers: usize) -> Accuracy {
    let n = choices.len();
    let p = if n > 0 {
        correct as f64 / n as f64
    } else {
        0.0
    };
    Accuracy {
        kind,
        tasks: n,
        correct,
        accuracy: p,
        accuracy_err: if n > 1 {
            (p * (1.0 - p) / (n - 1) as f64).sqrt()
        } else {
            0.0
        },
        random_chance: if n_answers > 0 {
            n as f64 / n_answers as f64
        } else {
            0.0
        },
        choices,
    }
}

/// Picks a task's choice from its computed log-probabilities, with llama.cpp's arithmetic per
/// kind: HellaSwag sums in f64 and takes the first maximum; multiple-choice sums in f32 and takes
/// the first maximum; WinoGrande sums in f32 and takes the first choice only when strictly better.
fn choose(kind: Kind, task: &Task, values: &[f32]) -> TaskChoice {
    let scores: Vec<f64> = task
        .spans
        .iter()
        .map(|span| {
            let v = &values[span.clone()];
            match kind {
                Kind::HellaSwag => v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64,
                _ => (v.iter().fold(0f32, |a, &x| a + x) / v.len() as f32) as f64,
            }
        })
        .collect();
    let choice = match kind {
        Kind::WinoGrande => {
            if scores[0] > scores[1] {
                0
            } else {
                1
            }
        }
        _ => (1..scores.len()).fold(0, |best, s| if scores[s] > scores[best] { s } else { best }),
    };
    TaskChoice {
        task: task.index,
        choice,
        gold: task.correct.iter().position(|&c| c).unwrap_or(0),
        correct: task.correct[choice],
        scores,
    }
}

/// Runs the sequences of `group` through `source` and returns, per task, the value of each of its
/// requests.
fn log_probs(
    source: &mut dyn LogitsSource,
    group: &[Task],
    n_vocab: usize,
) -> Result<Vec<Vec<f32>>> {
    // Windows: every choice's sequence; per window, its requests sorted by position.
    let mut windows = Vec::new();
    let mut wanted: Vec<Vec<(usize, usize, usize)>> = Vec::new(); // (pos, task, request)
    let mut base = Vec::with_capacity(group.len());
    for (t, task) in group.iter().enumerate() {
        base.push(windows.len());
        for seq in &task.seqs {
            if let Some((p, id)) = seq
                .iter()
                .enumerate()
                .find(|(_, &id)| id as usize >= n_vocab)
            {
                return Err(Error::VocabMismatch(format!(
                    "task {}: token id {id} at position {p} is not below the model's n_vocab {n_vocab}",
                    task.index
                )));
            }
            windows.push(seq.clone());
            wanted.push(Vec::new());
        }
        for (r, req) in task.requests.iter().enumerate() {
            wanted[base[t] + req.seq].push((req.pos, t, r));
        }
    }
    wanted.iter_mut().for_each(|w| w.sort_unstable());
    let first = wanted
        .iter()
        .filter_map(|w| w.first().map(|x| x.0))
        .min()
        .unwrap_or(0);
    let mut out: Vec<Vec<f32>> = group
        .iter()
        .map(|t| vec![f32::NAN; t.requests.len()])
        .collect();
    let mut filled = 0;
    source.logits(&windows, first, &mut |w, p, row| {
        if row.len() != n_vocab {
            return Err(Error::LogitsSource(format!(
                "row of {} logits, expected n_vocab {n_vocab}",
                row.len()
            )));
        }
        let Some(list) = wanted.get(w) else {
            return Err(Error::LogitsSource(format!(
                "row for window {w}, beyond {}",
                windows.len()
            )));
        };
        let at = list.partition_point(|x| x.0 < p);
        for &(_, t, r) in list[at..].iter().take_while(|x| x.0 == p) {
            let req = &group[t].requests[r];
            out[t][r] = log_prob(row, req.target as usize, req.kind);
            filled += 1;
        }
        Ok(())
    })?;
    let expected: usize = group.iter().map(|t| t.requests.len()).sum();
    if filled != expected {
        return Err(Error::LogitsSource(format!(
            "delivered rows for {filled} of {expected} scored positions"
        )));
    }
    Ok(out)
}

/// A log-probability from a row, in the variant `kind` names (the arithmetic is in
/// [`crate::eval::metrics`]).
fn log_prob(row: &[f32], target: usize, kind: LogProbKind) -> f32 {
    match kind {
        LogProbKind::Direct => metrics::log_prob_f32_sum(row, target),
        LogProbKind::Softmax => metrics::log_prob_via_softmax(row, target),
    }
}

/// A task file read and its tasks picked, before tokenization (which is per model, so a model
/// and its reference are scored on the same tasks, each tokenized by its own vocabulary).
#[derive(Clone, Debug)]
pub struct TaskFile {
    pub path: PathBuf,
    pub kind: Kind,
    /// Tasks asked for (`None`: llama-perplexity's default for the kind).
    pub count: Option<usize>,
    entries: Entries,
}

#[derive(Clone, Debug)]
enum Entries {
    HellaSwag(Vec<hellaswag::Entry>),
    WinoGrande(winogrande::Parsed),
    /// The picked tasks with their file indices, and the file's task count.
    MultipleChoice(Vec<(usize, multiple_choice::Entry)>, usize),
}

impl TaskFile {
    /// Reads `path` in `kind`'s format; errors name the file.
    pub fn read(kind: Kind, path: &Path, count: Option<usize>) -> Result<TaskFile> {
        let in_file = |source: Error| Error::InFile {
            path: path.to_path_buf(),
            source: Box::new(source),
        };
        let entries = match kind {
            Kind::HellaSwag => Entries::HellaSwag(
                hellaswag::parse(&crate::limits::read_text(path)?).map_err(in_file)?,
            ),
            Kind::WinoGrande => Entries::WinoGrande(
                winogrande::parse(&crate::limits::read_text(path)?).map_err(in_file)?,
            ),
            Kind::MultipleChoice => {
                let bytes = crate::limits::read_bounded(
                    path,
                    crate::limits::MAX_TEXT_BYTES,
                    "a multiple-choice file",
                )?;
                let (tasks, n) = multiple_choice::read(&bytes, count).map_err(in_file)?;
                Entries::MultipleChoice(tasks, n)
            }
        };
        Ok(TaskFile {
            path: path.to_path_buf(),
            kind,
            count,
            entries,
        })
    }

    /// Tasks in the file.
    pub fn in_file(&self) -> usize {
        match &self.entries {
            Entries::HellaSwag(e) => e.len(),
            Entries::WinoGrande(p) => p.entries.len(),
            Entries::MultipleChoice(_, n) => *n,
        }
    }

    /// The last line of a WinoGrande file, which llama.cpp does not read (see [`winogrande`]).
    pub fn unread_last_line(&self) -> Option<&str> {
        match &self.entries {
            Entries::WinoGrande(p) => p.unread_last_line.as_deref(),
            _ => None,
        }
    }

    /// The picked tasks tokenized by `tok`; a task needing more than `max_tokens` is refused.
    pub fn prepare(&self, tok: &Tokenizer, max_tokens: usize) -> Result<TaskSet> {
        match &self.entries {
            Entries::HellaSwag(e) => hellaswag::prepare(e, self.count, tok, max_tokens),
            Entries::WinoGrande(p) => winogrande::prepare(&p.entries, self.count, tok, max_tokens),
            Entries::MultipleChoice(t, n) => multiple_choice::prepare(t, *n, tok, max_tokens),
        }
        .map_err(|source| Error::InFile {
            path: self.path.clone(),
            source: Box::new(source),
        })
    }
}

/// Lines of a text file as llama.cpp's `-f` and `std::getline` give them: one trailing newline
/// dropped, then split at `\n` (a final empty piece is no line; `\r` stays in the line).
pub fn prompt_lines(text: &str) -> Vec<&str> {
    let text = text.strip_suffix('\n').unwrap_or(text);
    let mut lines: Vec<&str> = text.split('\n').collect();
    if lines.last() == Some(&"") {
        lines.pop();
    }
    lines
}

/// Refuses a task whose tokens do not fit llama-perplexity's context (`max` tokens: 4 sequences'
/// worth of `-c`, as it runs these tasks with 4 parallel sequences).
pub fn check_fits(task: &Task, max: usize) -> Result<()> {
    let need = task.required_tokens();
    if need > max {
        return Err(Error::TaskTooLong {
            index: task.index,
            need,
            max,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
