//! Human-readable output: aligned tables, and a progress bar for long work.

use std::io::{IsTerminal, Write};

/// How many terminal columns `s` takes: Hangul, CJK and full-width forms take two.
fn width(s: &str) -> usize {
    s.chars()
        .map(|c| match u32::from(c) {
            0x1100..=0x115F
            | 0x2E80..=0x303E
            | 0x3041..=0x33FF
            | 0x3400..=0x4DBF
            | 0x4E00..=0x9FFF
            | 0xA960..=0xA97F
            | 0xAC00..=0xD7A3
            | 0xF900..=0xFAFF
            | 0xFE30..=0xFE4F
            | 0xFF00..=0xFF60
            | 0xFFE0..=0xFFE6 => 2,
            _ => 1,
        })
        .sum()
}

/// Columns padded to their widest cell, two spaces apart; the last column is not padded.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(width(cell));
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let cells: Vec<&str> = cells.collect();
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < cells.len() {
                let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(width(cell)) + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// A progress bar on standard error, drawn only when it is a terminal (logs and pipes get one
/// line at the end instead).
#[derive(Debug)]
pub struct Progress {
    what: String,
    total: u64,
    done: u64,
    drawn: Option<u64>,
    terminal: bool,
}

impl Progress {
    pub fn new(what: impl Into<String>, total: u64) -> Progress {
        Progress { what: what.into(), total, done: 0, drawn: None, terminal: std::io::stderr().is_terminal() }
    }

    /// Changes what the bar says it is doing.
    pub fn label(&mut self, what: String) {
        self.what = what;
        self.drawn = None;
    }

    pub fn set(&mut self, done: u64) {
        self.done = done;
        if !self.terminal {
            return;
        }
        let percent = (self.done * 100).checked_div(self.total).unwrap_or(100).min(100);
        if self.drawn == Some(percent) {
            return;
        }
        self.drawn = Some(percent);
        let filled = usize::try_from(percent * 30 / 100).unwrap_or(30);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r{} [{}{}] {percent:>3}% ({}/{})\x1b[K",
            self.what,
            "#".repeat(filled),
            " ".repeat(30 - filled),
            self.done,
            self.total
        );
        let _ = err.flush();
    }

    pub fn finish(self) {
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = writeln!(err);
        } else {
            let _ = writeln!(err, "{}: {} of {} done", self.what, self.done, self.total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_under_their_headers() {
        let rows = vec![
            vec!["1".to_owned(), "Demo Shop".to_owned(), "active".to_owned()],
            vec!["1234".to_owned(), "카카오".to_owned(), "blocked".to_owned()],
        ];
        let text = render(&["ID", "NAME", "STATUS"], &rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines, vec!["ID    NAME       STATUS", "1     Demo Shop  active", "1234  카카오     blocked"]);
    }
}
