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
