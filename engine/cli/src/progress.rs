//! Progress bars on a terminal (indicatif: rate, elapsed, no output when piped).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A spinner counting records for one file, or None when stderr is not a
/// terminal or JSON output was asked for.
pub fn file_bar(key: &str, json: bool) -> Option<ProgressBar> {
    if json || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new_spinner();
    let style =
        ProgressStyle::with_template("{spinner} {msg} {pos} records ({per_sec}, {elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
    bar.set_style(style);
    bar.set_message(key.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    Some(bar)
}
