//! Progress on stderr: bars on a terminal, plain lines elsewhere (byte bars only on a terminal).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use gguf_prune::jobs::{Notice, Progress};
use indicatif::{ProgressBar, ProgressStyle};

/// A byte-count progress bar created lazily on the first update.
pub struct ByteProgress {
    label: &'static str,
    enabled: bool,
    bar: Option<ProgressBar>,
}

impl ByteProgress {
    pub fn new(label: &'static str, enabled: bool) -> ByteProgress {
        ByteProgress {
            label,
            enabled,
            bar: None,
        }
    }

    pub fn update(&mut self, done: u64, total: u64) {
        if !self.enabled {
            return;
        }
        let label = self.label;
        let bar = self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_message(label);
            bar
        });
        bar.set_position(done);
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// Progress of staged work (`stage`, done, total), such as scoring: a bar with an ETA on a
/// terminal; elsewhere (a log file, a pipe, CI) one plain line per stage and then at most one
/// every [`LINE_EVERY`], so a long run redirected to a file still shows where it is and how long
/// it has left.
pub struct StageProgress {
    bar: ProgressBar,
    lines: Option<std::cell::RefCell<Lines>>,
}

/// How often a plain progress line is printed within one stage.
const LINE_EVERY: Duration = Duration::from_secs(10);

struct Lines {
    stage: String,
    started: Instant,
    /// Work already done when the stage started (a pass that resumes from cached states starts
    /// part way): the rate, and so the ETA, counts only what this stage did.
    done_at_start: usize,
    last: Instant,
}

impl StageProgress {
    pub fn new(enabled: bool) -> StageProgress {
        let on_terminal = std::io::stderr().is_terminal();
        let bar = if enabled && on_terminal {
            ProgressBar::new(1)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("{msg:>24} [{bar:30}] {pos}/{len} {elapsed} (ETA {eta})")
                .expect("static template")
                .progress_chars("=> "),
        );
        let lines = (enabled && !on_terminal).then(|| {
            std::cell::RefCell::new(Lines {
                stage: String::new(),
                started: Instant::now(),
                done_at_start: 0,
                last: Instant::now(),
            })
        });
        StageProgress { bar, lines }
    }

    pub fn update(&self, stage: &str, done: usize, total: usize) {
        self.bar.set_message(stage.to_string());
        self.bar.set_length(total as u64);
        self.bar.set_position(done as u64);
        if let Some(lines) = &self.lines {
            lines.borrow_mut().update(stage, done, total);
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Lines {
    fn update(&mut self, stage: &str, done: usize, total: usize) {
        let now = Instant::now();
        let new_stage = stage != self.stage;
        if new_stage {
            self.stage = stage.to_string();
            self.started = now;
            self.done_at_start = done;
        }
        let finished = done >= total && total > 0;
        if !(new_stage || finished || now.duration_since(self.last) >= LINE_EVERY) {
            return;
        }
        self.last = now;
        let elapsed = now.duration_since(self.started).as_secs_f64();
        let progressed = done.saturating_sub(self.done_at_start);
        let eta = if progressed > 0 && !finished {
            let rate = elapsed / progressed as f64;
            format!(", ETA {:.0} s", rate * total.saturating_sub(done) as f64)
        } else {
            String::new()
        };
        eprintln!("{stage}: {done}/{total} ({elapsed:.1} s{eta})");
    }
}

/// A job's progress on stderr: one stage bar per step (cleared when the step ends), one byte bar
/// for the write, and the job's notices worded by the command (`notice`). With `enabled` false
/// (`--json`), nothing is shown.
pub struct JobBars {
    enabled: bool,
    stages: Option<StageProgress>,
    bytes: ByteProgress,
    notice: fn(&Notice),
}

impl JobBars {
    pub fn new(enabled: bool, notice: fn(&Notice)) -> JobBars {
        JobBars {
            enabled,
            stages: None,
            bytes: ByteProgress::new("writing", enabled),
            notice,
        }
    }
}

impl Progress for JobBars {
    fn stage(&mut self, stage: &str, done: usize, total: usize) {
        let enabled = self.enabled;
        self.stages
            .get_or_insert_with(|| StageProgress::new(enabled))
            .update(stage, done, total);
    }

    fn stage_end(&mut self) {
        if let Some(bar) = self.stages.take() {
            bar.finish();
        }
    }

    fn bytes(&mut self, done: u64, total: u64) {
        self.bytes.update(done, total);
    }

    fn bytes_end(&mut self) {
        self.bytes.finish();
    }

    fn notice(&mut self, notice: &Notice) {
        if self.enabled {
            (self.notice)(notice);
        }
    }
}
