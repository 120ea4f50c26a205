//! Progress bars on stderr (hidden when stderr is not a terminal).

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

/// A bar for staged work (`stage`, done, total), such as scoring: the stage is the message.
pub struct StageProgress {
    bar: ProgressBar,
}

impl StageProgress {
    pub fn new(enabled: bool) -> StageProgress {
        let bar = if enabled {
            ProgressBar::new(1)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("{msg:>24} [{bar:30}] {pos}/{len} {elapsed}")
                .expect("static template")
                .progress_chars("=> "),
        );
        StageProgress { bar }
    }

    pub fn update(&self, stage: &str, done: usize, total: usize) {
        self.bar.set_message(stage.to_string());
        self.bar.set_length(total as u64);
        self.bar.set_position(done as u64);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
