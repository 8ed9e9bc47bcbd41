//! Progress on a terminal (indicatif; nothing when stderr is not a terminal or
//! JSON output was asked for): one line for the whole run (files done, bytes
//! read of the total, rate, ETA, records) and a spinner for the file being loaded.

use std::io::{IsTerminal, Read};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// The run's overall progress.
pub struct Overall {
    multi: MultiProgress,
    bar: ProgressBar,
    files_total: usize,
    done_files: AtomicUsize,
    done_bytes: AtomicU64,
    done_records: AtomicU64,
    current_records: AtomicU64,
}

impl Overall {
    /// None when stderr is not a terminal or `json` output was asked for.
    pub fn start(files_total: usize, bytes_total: u64, json: bool) -> Option<Arc<Overall>> {
        if json || !std::io::stderr().is_terminal() {
            return None;
        }
        let multi = MultiProgress::new();
        let bar = multi.add(ProgressBar::new(bytes_total));
        let style = ProgressStyle::with_template(
            "{prefix} [{bar:24}] {bytes}/{total_bytes} · {binary_bytes_per_sec} · ETA {eta} · {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        let o = Arc::new(Overall {
            multi,
            bar,
            files_total,
            done_files: AtomicUsize::new(0),
            done_bytes: AtomicU64::new(0),
            done_records: AtomicU64::new(0),
            current_records: AtomicU64::new(0),
        });
        o.refresh();
        o.bar
            .enable_steady_tick(std::time::Duration::from_millis(250));
        Some(o)
    }

    /// A spinner counting the records of one file, above the overall line.
    pub fn file_bar(&self, key: &str) -> ProgressBar {
        let bar = self
            .multi
            .insert_before(&self.bar, ProgressBar::new_spinner());
        let style =
            ProgressStyle::with_template("{spinner} {msg} {pos} records ({per_sec}, {elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.set_message(key.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    }

    /// Records read so far in the current file.
    pub fn records(&self, n: u64) {
        self.current_records.store(n, Ordering::Relaxed);
        self.refresh();
    }

    /// Bytes read so far by the current pass over the current file.
    fn bytes(&self, n: u64) {
        self.bar
            .set_position(self.done_bytes.load(Ordering::Relaxed) + n);
    }

    /// The current file is done (loaded, duplicate or failed).
    pub fn file_done(&self, size: u64, records: u64) {
        self.done_files.fetch_add(1, Ordering::Relaxed);
        self.done_bytes.fetch_add(size, Ordering::Relaxed);
        self.done_records.fetch_add(records, Ordering::Relaxed);
        self.current_records.store(0, Ordering::Relaxed);
        self.bar
            .set_position(self.done_bytes.load(Ordering::Relaxed));
        self.refresh();
    }

    /// Runs `f` (printing to stdout) without tearing the bars.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.multi.suspend(f)
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn refresh(&self) {
        self.bar.set_prefix(format!(
            "{}/{} files",
            self.done_files.load(Ordering::Relaxed),
            self.files_total
        ));
        let records = self.done_records.load(Ordering::Relaxed)
            + self.current_records.load(Ordering::Relaxed);
        self.bar.set_message(format!("{records} records"));
    }
}

/// A reader that reports the bytes read through it to the overall line.
pub struct Counting<R> {
    inner: R,
    read: u64,
    overall: Arc<Overall>,
}

impl<R> Counting<R> {
    pub fn new(inner: R, overall: Arc<Overall>) -> Self {
        Counting {
            inner,
            read: 0,
            overall,
        }
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        self.overall.bytes(self.read);
        Ok(n)
    }
}
