//! WinoGrande in llama-perplexity's `--winogrande` format: CSV rows `index,sentence,choice1,
//! choice2,answer` where the sentence holds one `_` for the choice and the answer is 1 or 2
//! (e.g. the data set at huggingface.co/datasets/ikawrakow/winogrande-eval-for-llama.cpp).
//!
//! llama.cpp's partial scoring: each choice is put in place of the `_`; when both completed
//! sentences run more than 3 tokens past their shared prefix, only the tokens after the choice
//! are scored (the sentence's continuation), else everything after the shared prefix; in both
//! cases the last token is left out when more than one would be scored. The score is the mean
//! log-probability; choice 1 wins only when strictly better.
//!
//! Reading follows llama.cpp's loop: the file's last line is never read (once `-f` has dropped
//! the final newline, `std::getline` reaches the end of the text on it and the loop stops), and
//! a first line that is not a task (a header) is skipped. Any other line that is not a task is
//! an error here (llama.cpp skips it with a message, which would change the task count).

use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

use super::{common_prefix, select, Kind, LogProbKind, Request, Task, TaskSet};

/// llama.cpp's `k_min_trailing_ctx`: the continuation alone is scored when both completed
/// sentences have more than this many tokens after their shared prefix.
const MIN_TRAILING: usize = 3;

/// One task as the file gives it.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The sentence before and after the `_`.
    pub first: String,
    pub second: String,
    pub choices: [String; 2],
    /// 0 or 1 (the file's 1 or 2).
    pub gold: usize,
}

/// What a file gives: its tasks, and the line llama.cpp does not read (if not empty).
#[derive(Clone, Debug)]
pub struct Parsed {
    pub entries: Vec<Entry>,
    pub unread_last_line: Option<String>,
}

/// Reads a WinoGrande CSV as llama.cpp does (see the module docs).
pub fn parse(text: &str) -> Result<Parsed> {
    let text = text.strip_suffix('\n').unwrap_or(text);
    let mut pieces: Vec<&str> = text.split('\n').collect();
    let last = pieces.pop().filter(|l| !l.is_empty()).map(str::to_string);
    let mut entries = Vec::new();
    for (i, line) in pieces.iter().enumerate() {
        match parse_line(line) {
            Ok(e) => entries.push(e),
            Err(_) if i == 0 => {} // a header
            Err(why) => {
                return Err(Error::TaskFile {
                    line: Some(i + 1),
                    what: why,
                });
            }
        }
    }
    if entries.is_empty() {
        return Err(Error::TaskFile {
            line: None,
            what: "no tasks (rows: index,sentence with _,choice1,choice2,answer 1 or 2; the last line is not read)"
                .into(),
        });
    }
    Ok(Parsed {
        entries,
        unread_last_line: last,
    })
}

/// One CSV row, cut at its first four commas outside double quotes as llama.cpp cuts it.
fn parse_line(line: &str) -> std::result::Result<Entry, String> {
    let b = line.as_bytes();
    let mut commas = Vec::with_capacity(4);
    let mut quoted = false;
    for (i, &c) in b.iter().enumerate() {
        match (quoted, c) {
            (false, b',') => {
                commas.push(i);
                if commas.len() == 4 {
                    break;
                }
            }
            (_, b'"') => quoted = !quoted,
            _ => {}
        }
    }
    let [c0, c1, c2, c3] = commas[..] else {
        return Err(
            "fewer than 5 comma-separated fields (index,sentence,choice1,choice2,answer)".into(),
        );
    };
    let cut = |a: usize, z: usize| line.get(a..z).ok_or("a field cuts a UTF-8 character");
    // A quoted sentence loses its first and last byte (the quotes); "" inside is left as is.
    let sentence = if b.get(c0 + 1) == Some(&b'"') {
        cut(c0 + 2, c1 - 1)?
    } else {
        cut(c0 + 1, c1)?
    };
    let answer = &line[c3 + 1..];
    let gold = match answer.trim().parse::<u8>() {
        Ok(a @ 1..=2) => a as usize - 1,
        _ => return Err(format!("answer {answer:?} is not 1 or 2")),
    };
    let Some(at) = sentence.find('_') else {
        return Err(format!("no _ in the sentence {sentence:?}"));
    };
    Ok(Entry {
        first: sentence[..at].to_string(),
        second: sentence[at + 1..].to_string(),
        choices: [cut(c1 + 1, c2)?.to_string(), cut(c2 + 1, c3)?.to_string()],
        gold,
    })
}

/// Picks `count` tasks as llama.cpp does (all, in file order, when `None`), tokenizes them with
/// `tok` and refuses any that needs more than `max_tokens`.
pub fn prepare(
    entries: &[Entry],
    count: Option<usize>,
    tok: &Tokenizer,
    max_tokens: usize,
) -> Result<TaskSet> {
    let tasks = select::float_pick_order(entries.len(), count)
        .into_iter()
        .map(|index| {
            let task = task(index, &entries[index], tok)?;
            super::check_fits(&task, max_tokens)?;
            Ok(task)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(TaskSet {
        kind: Kind::WinoGrande,
        tasks,
        in_file: entries.len(),
    })
}

fn task(index: usize, e: &Entry, tok: &Tokenizer) -> Result<Task> {
    let encode = |c: &str, rest: &str| tok.encode(&format!("{}{c}{rest}", e.first), true);
    let seqs = vec![
        encode(&e.choices[0], &e.second)?,
        encode(&e.choices[1], &e.second)?,
    ];
    let n_base = [
        encode(&e.choices[0], "")?.len(),
        encode(&e.choices[1], "")?.len(),
    ];
    let (requests, spans) =
        requests(&seqs, n_base).map_err(|why| Error::UnscorableTask { index, why })?;
    Ok(Task {
        index,
        correct: vec![e.gold == 0, e.gold == 1],
        seqs,
        requests,
        spans,
    })
}

/// The log-probabilities llama.cpp averages for each choice, read from the rows it reads them
/// from: it indexes one batch (the shared prefix's last row, then each sequence's rows after the
/// prefix), and [`batch_row`] maps those indices back to (sequence, position).
fn requests(
    seqs: &[Vec<u32>],
    n_base: [usize; 2],
) -> std::result::Result<(Vec<Request>, Vec<std::ops::Range<usize>>), String> {
    let cp = common_prefix(seqs);
    if cp == 0 {
        return Err("the two sentences share no first token".into());
    }
    let lens = [seqs[0].len(), seqs[1].len()];
    let skip_choice = lens.iter().all(|&l| l - cp > MIN_TRAILING);
    let mut requests = Vec::new();
    let mut spans = Vec::with_capacity(2);
    for s in 0..2 {
        let base = if skip_choice { n_base[s] } else { cp };
        if base < cp || base > lens[s] {
            return Err(format!(
                "sentence {} and its text up to the choice tokenize inconsistently ({base} tokens up to the choice, {} in all, {cp} shared)",
                s + 1,
                lens[s]
            ));
        }
        let last = usize::from(lens[s] - base > 1);
        let first_li = if s == 0 {
            base - cp
        } else {
            lens[0] - cp + base - cp
        };
        let start = requests.len();
        for (li, j) in (first_li..).zip(base - 1..lens[s] - 1 - last) {
            let (seq, pos) = batch_row(li, cp, lens)?;
            requests.push(Request {
                seq,
                pos,
                target: seqs[s][j + 1],
                kind: LogProbKind::Direct,
            });
        }
        spans.push(start..requests.len());
    }
    Ok((requests, spans))
}

/// The (sequence, position) of row `li` of llama.cpp's batch for one task: row 0 is the shared
/// prefix's last token, then the first sequence's tokens after the prefix, then the second's.
fn batch_row(
    li: usize,
    cp: usize,
    lens: [usize; 2],
) -> std::result::Result<(usize, usize), String> {
    let after0 = lens[0] - cp;
    let after1 = lens[1] - cp;
    match li {
        0 => Ok((0, cp - 1)),
        _ if li <= after0 => Ok((0, cp + li - 1)),
        _ if li <= after0 + after1 => Ok((1, cp + li - after0 - 1)),
        _ => Err(format!(
            "row {li} is past the task's {} rows",
            after0 + after1 + 1
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rows_like_llama_cpp() {
        let text = "index,sentence,option1,option2,answer\n\
                    0,\"A, then _ went.\",Ann,Bob,2\n\
                    1,The _ fell.,cup,plate,1\n\
                    2,never read _.,a,b,1\n";
        let p = parse(text).unwrap();
        assert_eq!(p.entries.len(), 2);
        assert_eq!(p.entries[0].first, "A, then ");
        assert_eq!(p.entries[0].second, " went.");
        assert_eq!(p.entries[0].gold, 1);
        assert_eq!(
            p.entries[1].choices,
            ["cup".to_string(), "plate".to_string()]
        );
        assert_eq!(p.unread_last_line.as_deref(), Some("2,never read _.,a,b,1"));
    }

    #[test]
    fn refuses_bad_rows_after_the_first() {
        let bad = |row: &str| {
            parse(&format!("0,The _ fell.,cup,plate,1\n{row}\nlast\n"))
                .unwrap_err()
                .to_string()
        };
        assert!(bad("1,The _ fell.,cup,plate,3").contains("line 2: answer \"3\""));
        assert!(bad("1,The _ fell.,cup,plate").contains("fewer than 5"));
        assert!(bad("1,The cup fell.,cup,plate,1").contains("no _"));
    }

    #[test]
    fn the_second_choice_reads_the_first_sequences_last_row_when_nothing_is_skipped() {
        // Sentences "p x y" / "p z y": 1 shared token, 2 after it, so the choice is scored too.
        let seqs = vec![vec![5, 1, 9], vec![5, 2, 9]];
        let (req, spans) = requests(&seqs, [2, 2]).unwrap();
        // Choice 1: row of position 0 -> token 1 (the last token is left out).
        assert_eq!((req[0].seq, req[0].pos, req[0].target), (0, 0, 1));
        // Choice 2: llama.cpp's index points at the first sequence's last row.
        assert_eq!((req[1].seq, req[1].pos, req[1].target), (0, 2, 2));
        assert_eq!(spans, vec![0..1, 1..2]);
    }
}
