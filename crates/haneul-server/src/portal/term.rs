//! Job output as a terminal would show it, for the portal's log view: ANSI colours and
//! emphasis (SGR) become spans with classes (the content security policy allows no inline
//! style), a carriage return starts its line over (progress bars show their last state, not
//! one line per update), and every other escape or control sequence is dropped. The result
//! is HTML-escaped text; nothing the job printed can become markup.
//!
//! Output arrives in chunks and the page appends them as they come, so a line may be unfinished
//! when drawn. The log view keeps the unfinished last line apart and draws it again from its
//! start on the next refresh; [`Style`] carries the colours in effect where that line begins.

use std::fmt::Write;

/// The SGR attributes in effect at a point of the output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Style {
    bold: bool,
    dim: bool,
    italic: bool,
    underline: bool,
    /// 0-15: the eight colours and their bright forms.
    fg: Option<u8>,
    bg: Option<u8>,
}

impl Style {
    /// The SGR parameters that recreate this style from the default (`1;31`), for the log view's
    /// next request; empty for the default.
    pub fn codes(&self) -> String {
        let mut codes: Vec<String> = Vec::new();
        for (on, code) in [
            (self.bold, 1),
            (self.dim, 2),
            (self.italic, 3),
            (self.underline, 4),
        ] {
            if on {
                codes.push(code.to_string());
            }
        }
        if let Some(c) = self.fg {
            codes.push(colour_code(c, 30, 90).to_string());
        }
        if let Some(c) = self.bg {
            codes.push(colour_code(c, 40, 100).to_string());
        }
        codes.join(";")
    }

    /// The style `codes` (as [`Style::codes`] writes them) describe; anything else, or a value
    /// longer than any style needs, is the default style.
    pub fn from_codes(codes: &str) -> Style {
        let mut style = Style::default();
        if codes.len() <= 32 && codes.bytes().all(|b| b.is_ascii_digit() || b == b';') {
            style.apply(codes);
        }
        style
    }

    /// Applies one SGR sequence's parameters (`ESC [ params m`).
    fn apply(&mut self, params: &str) {
        let mut it = params.split(';').map(|p| p.parse::<u16>().unwrap_or(0));
        if params.is_empty() {
            *self = Style::default();
            return;
        }
        while let Some(p) = it.next() {
            match p {
                0 => *self = Style::default(),
                1 => self.bold = true,
                2 => self.dim = true,
                3 => self.italic = true,
                4 => self.underline = true,
                22 => {
                    self.bold = false;
                    self.dim = false;
                }
                23 => self.italic = false,
                24 => self.underline = false,
                30..=37 => self.fg = Some((p - 30) as u8),
                90..=97 => self.fg = Some((p - 90 + 8) as u8),
                39 => self.fg = None,
                40..=47 => self.bg = Some((p - 40) as u8),
                100..=107 => self.bg = Some((p - 100 + 8) as u8),
                49 => self.bg = None,
                // 256-colour and true-colour forms: their arguments are skipped, the colour
                // is not drawn (the palette of sixteen is what the stylesheet has).
                38 | 48 => match it.next() {
                    Some(5) => {
                        it.next();
                    }
                    Some(2) => {
                        it.next();
                        it.next();
                        it.next();
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }

    fn classes(&self) -> String {
        let mut c = String::new();
        for (on, name) in [
            (self.bold, "ansi-bold"),
            (self.dim, "ansi-dim"),
            (self.italic, "ansi-italic"),
            (self.underline, "ansi-underline"),
        ] {
            if on {
                c.push_str(name);
                c.push(' ');
            }
        }
        if let Some(f) = self.fg {
            let _ = write!(c, "ansi-fg-{f} ");
        }
        if let Some(b) = self.bg {
            let _ = write!(c, "ansi-bg-{b} ");
        }
        c.trim_end().to_string()
    }
}

fn colour_code(c: u8, base: u16, bright: u16) -> u16 {
    if c < 8 {
        base + u16::from(c)
    } else {
        bright + u16::from(c - 8)
    }
}

/// One line being drawn: runs of text with their style, cleared by a carriage return.
#[derive(Default)]
struct Line {
    runs: Vec<(Style, String)>,
}

impl Line {
    fn push(&mut self, style: Style, ch: char) {
        match self.runs.last_mut() {
            Some((s, text)) if *s == style => text.push(ch),
            _ => self.runs.push((style, ch.to_string())),
        }
    }

    fn write_html(&self, out: &mut String) {
        for (style, text) in &self.runs {
            let classes = style.classes();
            if classes.is_empty() {
                escape_into(text, out);
            } else {
                let _ = write!(out, "<span class=\"{classes}\">");
                escape_into(text, out);
                out.push_str("</span>");
            }
        }
    }
}

fn escape_into(text: &str, out: &mut String) {
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// `text` drawn from `style` as HTML, and the style in effect at its end. Each `\n` ends a line
/// and is kept; a `\r` not followed by `\n` starts its line over.
pub fn render(text: &str, mut style: Style) -> (String, Style) {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let mut line = Line::default();
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '\n' => {
                line.write_html(&mut out);
                out.push('\n');
                line = Line::default();
            }
            // A lone carriage return at the very end may be the first half of `\r\n` still to
            // come; the view draws an unfinished line again, so it is left for then.
            '\r' if matches!(chars.peek(), Some('\n') | None) => {}
            '\r' => line = Line::default(),
            '\u{1b}' => match chars.next() {
                Some('[') => {
                    // CSI: parameters, intermediates, one final byte in @..~.
                    let mut params = String::new();
                    let mut last = None;
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            last = Some(c);
                            break;
                        }
                        if params.len() < 64 {
                            params.push(c);
                        }
                    }
                    if last == Some('m') {
                        style.apply(&params);
                    }
                }
                Some(']') => {
                    // OSC (window titles, links): up to BEL or ESC \.
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' {
                            break;
                        }
                        if c == '\u{1b}' {
                            chars.next_if_eq(&'\\');
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\t' => line.push(style, '\t'),
            c if c.is_control() => {}
            c => line.push(style, c),
        }
    }
    line.write_html(&mut out);
    (out, style)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn html(text: &str) -> String {
        render(text, Style::default()).0
    }

    #[test]
    fn colours_become_classes_and_reset() {
        assert_eq!(
            html("\u{1b}[1;31merror\u{1b}[0m: bad"),
            "<span class=\"ansi-bold ansi-fg-1\">error</span>: bad"
        );
        assert_eq!(
            html("\u{1b}[92mok\u{1b}[39m."),
            "<span class=\"ansi-fg-10\">ok</span>."
        );
        // 256-colour arguments are skipped, not read as other attributes.
        assert_eq!(html("\u{1b}[38;5;1mx\u{1b}[m"), "x");
    }

    #[test]
    fn carriage_returns_keep_the_last_state_of_a_line() {
        assert_eq!(
            html(" 10%|#   |\r 50%|##  |\r100%|####|\ndone\n"),
            "100%|####|\ndone\n"
        );
        // Windows line ends are line ends, not a reason to clear the line.
        assert_eq!(html("a\r\nb\r\n"), "a\nb\n");
        // The colour set before the return still holds after it.
        assert_eq!(
            html("\u{1b}[32mold\rnew"),
            "<span class=\"ansi-fg-2\">new</span>"
        );
    }

    #[test]
    fn output_cannot_become_markup_and_other_escapes_go() {
        assert_eq!(
            html("<script>alert(1)</script> & \"'"),
            "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;&#39;"
        );
        assert_eq!(html("a\u{1b}[2Kb\u{1b}]0;title\u{7}c\u{8}d\u{0}e"), "abcde");
        assert_eq!(html("한국어\t출력"), "한국어\t출력");
    }

    #[test]
    fn the_style_at_the_end_carries_to_the_next_part() {
        let (_, style) = render("\u{1b}[1;33mwarn", Style::default());
        assert_eq!(style.codes(), "1;33");
        let again = Style::from_codes(&style.codes());
        assert_eq!(again, style);
        assert_eq!(
            render("ing", again).0,
            "<span class=\"ansi-bold ansi-fg-3\">ing</span>"
        );
        assert_eq!(Style::from_codes("1;<b>"), Style::default());
        assert_eq!(Style::from_codes(&"1;".repeat(40)), Style::default());
    }
}
