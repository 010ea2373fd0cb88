//! A progress bar on stderr (records/s, ETA), drawn only when stderr is a terminal.

use indicatif::{ProgressBar, ProgressStyle};

pub(super) fn records_bar(message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    let style = ProgressStyle::with_template(
        "{msg} [{bar:40}] {human_pos}/{human_len} records, {per_sec}, ETA {eta}",
    )
    .unwrap_or_else(|_| unreachable!("the template above is valid"))
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(message);
    bar
}
