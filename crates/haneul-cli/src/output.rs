//! How the client commands write: tables for people, JSON for scripts, colour only on a
//! terminal and never under NO_COLOR (https://no-color.org), and the exit status of a usage
//! mistake.

use comfy_table::Table;
use std::io::IsTerminal;

/// A mistake in how the command was called (exit status 2, as clap's own), as opposed to a
/// failure while doing it (1).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Whether colour may be written to a stream that is (or is not) a terminal.
pub fn colour_allowed(is_tty: bool, no_color: Option<std::ffi::OsString>) -> bool {
    is_tty && no_color.is_none_or(|v| v.is_empty())
}

pub fn stdout_colour() -> bool {
    colour_allowed(
        std::io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR"),
    )
}

pub fn stderr_colour() -> bool {
    colour_allowed(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR"),
    )
}

/// `text` in the ANSI colour that suits a job or node state, when colour is allowed.
pub fn state(text: &str, colour: bool) -> String {
    let shown = crate::i18n::word(text);
    if !colour {
        return shown;
    }
    let code = match text {
        "succeeded" | "up" | "running" => "32",
        "failed" | "timed_out" | "down" | "node_lost" => "31",
        "queued" | "stopping" | "draining" | "assigned" => "33",
        "cancelled" | "preempted" => "90",
        _ => return shown,
    };
    format!("\x1b[{code}m{shown}\x1b[0m")
}

pub fn red(text: &str, colour: bool) -> String {
    if colour {
        format!("\x1b[31m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// `text` safe to print in a table or a line: every control character (ESC, CR, LF, tab, ...)
/// is written as its escape (`\u{1b}`), so a tenant's job name cannot move the cursor, clear
/// the screen or forge rows in an operator's terminal.
pub fn shown(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A borderless table like squeue's.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(comfy_table::presets::NOTHING);
    t.set_header(header.iter().copied());
    t
}

pub fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour_allowed(true, None));
        assert!(!colour_allowed(false, None));
        assert!(!colour_allowed(true, Some("1".into())));
        // The standard: an empty NO_COLOR does not disable colour.
        assert!(colour_allowed(true, Some("".into())));
        assert_eq!(state("failed", false), "failed");
        assert!(state("failed", true).contains("\x1b[31m"));
    }

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(shown("train 하늘"), "train 하늘");
        assert_eq!(shown("a\x1b[2Jb\r\nc"), "a\\u{1b}[2Jb\\u{d}\\u{a}c");
        assert!(!shown("\x07\x1b\u{9b}").chars().any(char::is_control));
    }
}
