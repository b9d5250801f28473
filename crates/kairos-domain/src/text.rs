//! Text that came from callers (task reasons, approval reasons, errors), for showing to
//! people: control characters and the invisible characters that reorder or hide text
//! (bidi embeddings, overrides and isolates, marks, zero-width characters, the byte-order
//! mark) are shown escaped, as `\u{202e}`, so a line reads as it was sent and cannot
//! drive a terminal. The CLI and the console both show text through [`clean`].

/// `s` with every character [`needs_escape`] names escaped (`\u{202e}`, `\n`).
pub fn clean(s: &str) -> String {
    if !s.chars().any(needs_escape) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if needs_escape(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Control characters, and the invisible formatting characters that reorder or hide text:
/// bidi embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069), marks
/// (U+200E, U+200F, U+061C), zero-width characters and the byte-order mark.
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
        )
}

#[cfg(test)]
mod tests {
    use super::clean;

    fn check(input: &str, expected: &str) {
        assert_eq!(clean(input), expected);
    }

    #[test]
    fn invisible_and_control_characters_are_shown_escaped() {
        check("plain reason", "plain reason");
        check("abc\u{202e}fed", "abc\\u{202e}fed");
        check("line\nbreak", "line\\nbreak");
        check("zero\u{200b}width", "zero\\u{200b}width");
        check("<b>", "<b>");
    }
}
