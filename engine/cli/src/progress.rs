//! Progress on a terminal (indicatif; nothing when stderr is not a terminal or
//! JSON output was asked for): one line for the whole run (files done, bytes
//! read of the total, rate, ETA, records) and a spinner for each file being
//! loaded (several when sources load in parallel).

use std::collections::HashMap;
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
    /// Per file being loaded (by its place in the run): bytes read by the
    /// current pass over it, and records read.
    current: std::sync::Mutex<HashMap<usize, (u64, u64)>>,
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
            current: std::sync::Mutex::new(HashMap::new()),
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

    /// Updates file `file`'s entry: `f` gets its (bytes, records).
    fn with_current(&self, file: usize, f: impl FnOnce(&mut (u64, u64))) -> (u64, u64) {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(current.entry(file).or_default());
        drop(current);
        self.in_flight()
    }

    /// Bytes and records read of the files being loaded.
    fn in_flight(&self) -> (u64, u64) {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .fold((0, 0), |(b, r), (fb, fr)| (b + fb, r + fr))
    }

    /// Records read so far in file `file`.
    pub fn records(&self, file: usize, n: u64) {
        self.with_current(file, |c| c.1 = n);
        self.refresh();
    }

    /// Bytes read so far by the current pass over file `file`.
    fn bytes(&self, file: usize, n: u64) {
        let (bytes, _) = self.with_current(file, |c| c.0 = n);
        self.bar
            .set_position(self.done_bytes.load(Ordering::Relaxed) + bytes);
    }

    /// File `file` is done (loaded, duplicate or failed).
    pub fn file_done(&self, file: usize, size: u64, records: u64) {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&file);
        self.done_files.fetch_add(1, Ordering::Relaxed);
        self.done_bytes.fetch_add(size, Ordering::Relaxed);
        self.done_records.fetch_add(records, Ordering::Relaxed);
        let (bytes, _) = self.in_flight();
        self.bar
            .set_position(self.done_bytes.load(Ordering::Relaxed) + bytes);
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
        let (_, current) = self.in_flight();
        let records = self.done_records.load(Ordering::Relaxed) + current;
        self.bar.set_message(format!("{records} records"));
    }
}

/// A reader that reports the bytes read through it to the overall line.
pub struct Counting<R> {
    inner: R,
    read: u64,
    overall: Arc<Overall>,
    /// The file's place in the run.
    file: usize,
}

impl<R> Counting<R> {
    pub fn new(inner: R, overall: Arc<Overall>, file: usize) -> Self {
        Counting {
            inner,
            read: 0,
            overall,
            file,
        }
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        self.overall.bytes(self.file, self.read);
        Ok(n)
    }
}
