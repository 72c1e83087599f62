//! What a tenant's strings may hold, in one place: every JSON body passes [`check_body`] before
//! it is parsed, and handlers check lengths with [`name`] and [`text`].
//!
//! - Names (everything not listed below) hold no control character at all: a name is printed
//!   in tables, and ESC, CR or LF in one would let a tenant forge rows in an operator's
//!   terminal.
//! - Free text ([`FREE_TEXT`]: command arguments, reasons, plans, comments, health failures)
//!   may hold tab and newline, nothing else below U+0020 nor DEL or the C1 controls.
//! - NUL is refused everywhere with a message saying so: PostgreSQL cannot store it in text,
//!   and refusing it on SQLite too keeps both backends answering alike.
//! - Job output (`data` of a log upload) is the one exception: it is stored as the program
//!   printed it (see the store's log encoding).
//!
//! Lengths are counted in characters (Unicode scalar values), not bytes, so 100 Hangul
//! syllables are 100 characters.

use crate::error::ApiError;
use serde_json::Value;

/// Fields whose strings are free text (tab and newline allowed).
pub const FREE_TEXT: &[&str] = &["command", "reason", "plan", "comment", "failure", "detail"];

/// Fields holding a file's text (a CSV list), where CR of CRLF line ends is also allowed.
const FILE_TEXT: &[&str] = &["csv"];

/// Fields taken as they come (job output).
const RAW: &[&str] = &["data"];

/// Deepest nesting walked; deeper bodies are refused (serde_json stops at 128 anyway).
const MAX_DEPTH: usize = 64;

/// Checks every string of a JSON body by the rules of the field holding it. A body that is
/// not JSON passes: the parser then names the syntax error.
pub fn check_body(bytes: &[u8]) -> Result<(), ApiError> {
    let Ok(v) = serde_json::from_slice::<Value>(bytes) else {
        return Ok(());
    };
    walk(&v, "", "", 0)
}

fn walk(v: &Value, path: &str, key: &str, depth: usize) -> Result<(), ApiError> {
    if depth > MAX_DEPTH {
        return Err(ApiError::bad(path_or_body(path), "nested too deeply"));
    }
    match v {
        Value::String(s) => {
            if RAW.contains(&key) {
                Ok(())
            } else if FILE_TEXT.contains(&key) {
                chars(path, &s.replace("\r\n", "\n"), true)
            } else {
                chars(path, s, FREE_TEXT.contains(&key))
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, &format!("{path}[{i}]"), key, depth + 1)?;
            }
            Ok(())
        }
        Value::Object(map) => {
            for (k, item) in map {
                chars(&join(path, "key"), k, false)?;
                walk(item, &join(path, k), k, depth + 1)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn join(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

fn path_or_body(path: &str) -> &str {
    if path.is_empty() { "body" } else { path }
}

/// Refuses control characters in `s`: all of them, or all but tab and newline when
/// `free_text`.
fn chars(field: &str, s: &str, free_text: bool) -> Result<(), ApiError> {
    for (i, c) in s.chars().enumerate() {
        if c == '\0' {
            return Err(ApiError::bad(
                path_or_body(field),
                format!("must not hold NUL (U+0000, at character {})", i + 1),
            ));
        }
        if c.is_control() && !(free_text && (c == '\t' || c == '\n')) {
            let allowed = if free_text {
                "only tab and newline are allowed"
            } else {
                "names hold no control characters"
            };
            return Err(ApiError::bad(
                path_or_body(field),
                format!(
                    "must not hold control character U+{:04X} (at character {}); {allowed}",
                    c as u32,
                    i + 1
                ),
            ));
        }
    }
    Ok(())
}

/// A name: 1 to `max` characters, no control characters.
pub fn name(field: &str, s: &str, max: usize) -> Result<(), ApiError> {
    let n = s.chars().count();
    if n == 0 || n > max {
        return Err(ApiError::bad(
            field,
            format!("must be 1 to {max} characters (got {n})"),
        ));
    }
    chars(field, s, false)
}

/// A name that may be empty.
pub fn optional_name(field: &str, s: &str, max: usize) -> Result<(), ApiError> {
    if s.is_empty() {
        return Ok(());
    }
    name(field, s, max)
}

/// Free text: at most `max` characters; tab and newline allowed.
pub fn text(field: &str, s: &str, max: usize) -> Result<(), ApiError> {
    let n = s.chars().count();
    if n > max {
        return Err(ApiError::bad(
            field,
            format!("must be at most {max} characters (got {n})"),
        ));
    }
    chars(field, s, true)
}

/// The reason an operator or owner gives for an action, kept in the audit log: trimmed, at
/// most 500 characters of text; blank is none.
pub fn reason(r: Option<&str>) -> Result<Option<&str>, ApiError> {
    let Some(r) = r.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    text("reason", r, 500)?;
    Ok(Some(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(r: Result<(), ApiError>) -> String {
        match r {
            Err(ApiError::BadRequest { field, .. }) => field,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn reasons_refuse_escapes_and_length_and_treat_blank_as_none() {
        for bad in [
            "fan\x1b[2Jforged".to_string(),
            "a\0b".into(),
            "x".repeat(501),
        ] {
            assert_eq!(
                field_of(reason(Some(&bad)).map(|_| ())),
                "reason",
                "{bad:?}"
            );
        }
        assert_eq!(
            reason(Some("  fan replacement \n")).unwrap(),
            Some("fan replacement")
        );
        assert_eq!(reason(Some(" \t ")).unwrap(), None);
        assert_eq!(
            reason(Some(&"한".repeat(500))).unwrap().map(str::len),
            Some(1500)
        );
    }

    #[test]
    fn names_refuse_every_control_character() {
        for c in ['\0', '\x1b', '\r', '\n', '\t', '\x7f', '\u{85}'] {
            let s = format!("a{c}b");
            assert_eq!(field_of(name("name", &s, 10)), "name", "{c:?}");
        }
        assert!(name("name", "하늘", 2).is_ok());
    }

    #[test]
    fn lengths_are_characters() {
        let hangul = "가".repeat(100);
        assert!(name("name", &hangul, 128).is_ok());
        assert!(name("name", &"가".repeat(129), 128).is_err());
        assert!(text("plan", &"가".repeat(10), 10).is_ok());
        assert!(text("plan", &"가".repeat(11), 10).is_err());
    }

    #[test]
    fn bodies_are_checked_by_field() {
        // A job name with ESC, a command argument with a newline, log data with NUL.
        assert_eq!(
            field_of(check_body(br#"{"name":"a\u001b[2Jb","command":["x"]}"#)),
            "name"
        );
        assert!(check_body(br#"{"command":["sh","-c","echo a\nb\tc"]}"#).is_ok());
        assert_eq!(
            field_of(check_body(br#"{"command":["sh","a\rb"]}"#)),
            "command[1]"
        );
        assert!(check_body(br#"{"job":1,"data":"x\u0000y"}"#).is_ok());
        assert_eq!(
            field_of(check_body(br#"{"quotas":[{"gpu_model":"H\u0000"}]}"#)),
            "quotas[0].gpu_model"
        );
        assert_eq!(field_of(check_body(br#"{"reason":"a\u0000b"}"#)), "reason");
        // Not JSON: left to the parser.
        assert!(check_body(b"{nope").is_ok());
    }
}
