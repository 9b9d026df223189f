//! What a run prints while it runs: messages on their own lines and a status line, rewritten in place
//! on a terminal and printed every few seconds as plain lines otherwise (a log, a pipe, systemd).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often the status goes out as a plain line when stdout is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(2);

/// Stdout for a run.
#[derive(Debug)]
pub struct Console {
    tty: bool,
    /// Whether a status line is on screen (terminal) and must be cleared before a message.
    shown: bool,
    last_plain: Option<Instant>,
}

impl Default for Console {
    fn default() -> Self {
        Self::new()
    }
}

impl Console {
    /// A console on stdout.
    pub fn new() -> Self {
        Console { tty: std::io::stdout().is_terminal(), shown: false, last_plain: None }
    }

    /// Whether the status line is rewritten in place.
    pub fn is_tty(&self) -> bool {
        self.tty
    }

    /// A message on its own line.
    pub fn line(&mut self, text: &str) {
        let mut out = std::io::stdout().lock();
        if std::mem::take(&mut self.shown) {
            let _ = write!(out, "\r\x1b[2K");
        }
        let _ = writeln!(out, "{text}");
    }

    /// The status: in place on a terminal; otherwise as a line now and then.
    pub fn status(&mut self, text: &str) {
        let mut out = std::io::stdout().lock();
        if self.tty {
            let _ = write!(out, "\r\x1b[2K{text}");
            let _ = out.flush();
            self.shown = true;
        } else if self.last_plain.is_none_or(|t| t.elapsed() >= PLAIN_EVERY) {
            let _ = writeln!(out, "{text}");
            self.last_plain = Some(Instant::now());
        }
    }

    /// Clear the status line (before the summary).
    pub fn finish(&mut self) {
        if std::mem::take(&mut self.shown) {
            let _ = write!(std::io::stdout().lock(), "\r\x1b[2K");
        }
    }
}
