//! Log text, made safe to show to a person.
//!
//! Everything a report, a page, the text output or a CSV shows from a log
//! line (an address, a remote server's reply, a Message-ID, a folder) was
//! written by whoever sent the mail or opened the connection. Two kinds of
//! characters in it would act instead of being read:
//!
//! * control characters (C0, including tab, CR and LF; DEL; C1): in a
//!   terminal, ESC starts a sequence that moves the cursor, recolours or
//!   retitles; NUL and the rest confuse spreadsheets and editors that open
//!   the CSV;
//! * bidirectional controls (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F,
//!   U+061C) and the line and paragraph separators (U+2028, U+2029): they
//!   reorder or break the text around them, so that a recipient at
//!   `moc.tset@…` with a right-to-left override reads as another domain.
//!
//! [`visible`] shows each of them as its code point, `<U+202E>`, so the
//! reader sees that it is there and nothing is reordered. It is the one
//! function every rendering of log text goes through: the HTML and text
//! templates (as their formatter), a report's detail rows (written apart
//! from the template, `report::rows`), `history` and `access` as text and
//! as CSV. JSON output keeps the text exact: it is for programs, and JSON
//! escapes control characters itself.
//!
//! A tab is shown too: no field of a log line holds one on purpose, and in
//! a column of the text output it would shift every column after it.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` is shown as its code point instead of itself.
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

/// `s` with every control character and bidirectional control shown as
/// `<U+XXXX>`; borrowed when there is none (the common case).
pub fn visible(s: &str) -> Cow<'_, str> {
    // Printable ASCII (most of what logs hold) hides nothing: checked a
    // byte at a time, far cheaper than by character.
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Cow::Borrowed(s);
    }
    let Some(first) = s.find(is_hidden) else {
        return Cow::Borrowed(s);
    };
    let mut out = String::with_capacity(s.len() + 16);
    out.push_str(&s[..first]);
    for c in s[first..].chars() {
        if is_hidden(c) {
            let _ = write!(out, "<U+{:04X}>", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(visible("alice@example.edu"), Cow::Borrowed(_)));
        assert!(matches!(visible("日期 résumé"), Cow::Borrowed(_)));
    }

    #[test]
    fn bidirectional_controls_are_shown() {
        assert_eq!(visible("bob@\u{202E}tset.live"), "bob@<U+202E>tset.live");
        for c in [
            '\u{061C}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}',
            '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{2028}', '\u{2029}',
        ] {
            let text = format!("a{c}b");
            assert_eq!(visible(&text), format!("a<U+{:04X}>b", u32::from(c)));
        }
    }

    #[test]
    fn control_characters_are_shown() {
        assert_eq!(
            visible("ok\x1b[2J\0\x07\t\r\n\x7f\u{85}\u{9b}end"),
            "ok<U+001B>[2J<U+0000><U+0007><U+0009><U+000D><U+000A><U+007F><U+0085><U+009B>end"
        );
    }

    #[test]
    fn other_characters_are_kept() {
        // Joiners and other format characters do not reorder text; Chinese
        // and accented text is ordinary content.
        for s in ["a\u{200D}b", "郵件 ü", "<b>&amp;</b>", "U+202E"] {
            assert_eq!(visible(s), s);
        }
    }
}
