//! The text clean-up OpenAI's CLIP tokenizer applies before BPE
//! (`clip/simple_tokenizer.py`), which CLIP was trained on:
//!
//! ```python
//! text = ftfy.fix_text(text)                  # mojibake, curly quotes, widths, NFC
//! text = html.unescape(html.unescape(text)).strip()
//! text = re.sub(r'\s+', ' ', text).strip()    # the `regex` module's \s
//! text = text.lower()
//! ```
//!
//! ftfy and `html.unescape` are the owlet-ftfy crate's (ftfy/), checked against
//! OpenAI's tokenizer by tests/it/text_cleanup.rs.

use std::borrow::Cow;

use owlet_ftfy::html;

/// Which clean-up a bundle's texts get before BPE (its manifest's `text.cleanup`).
pub use owlet_formats::manifest::TextCleanup;

/// Cleans `text` as `cleanup` says; `Transformers` leaves it to the tokenizer's own
/// normalizer, as transformers' CLIPTokenizer does.
pub fn clean(cleanup: TextCleanup, text: &str) -> Cow<'_, str> {
    match cleanup {
        TextCleanup::Transformers => Cow::Borrowed(text),
        TextCleanup::Openai => Cow::Owned(openai(text)),
    }
}

/// OpenAI's `whitespace_clean(basic_clean(text)).lower()`.
pub fn openai(text: &str) -> String {
    let text = owlet_ftfy::fix_text(text, None);
    let text = html::unescape(&html::unescape(&text)).into_owned();
    let text = collapse_whitespace(python_strip(&text));
    python_strip(&text).to_lowercase()
}

/// Python's `str.strip()`: `str.isspace` also counts U+001C..U+001F, which Unicode's
/// White_Space (Rust's `char::is_whitespace`) does not.
fn python_strip(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || ('\x1c'..='\x1f').contains(&c))
}

/// `regex.sub(r'\s+', ' ', text)`: the `regex` module's `\s` is Unicode's White_Space,
/// which is exactly `char::is_whitespace`.
fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
        } else {
            out.push(c);
            in_space = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_punctuation_becomes_what_clip_was_trained_on() {
        assert_eq!(
            openai("Don’t “Open” the  GARAGE\u{a0}door…"),
            "don't \"open\" the garage door…"
        );
    }

    #[test]
    fn terminal_escapes_are_removed() {
        assert_eq!(openai("\x1b[31mred\x1b[0m light"), "red light");
    }

    #[test]
    fn entities_and_mojibake_are_decoded() {
        assert_eq!(openai("caf&eacute; &amp;amp; cafÃ©"), "café & café");
    }

    #[test]
    fn strip_counts_the_separators_python_calls_space() {
        assert_eq!(python_strip("\x1f a \u{3000}"), "a");
        assert_eq!(collapse_whitespace("a \t\n\u{2028} b\x1fc"), "a b\x1fc");
    }

    #[test]
    fn transformers_mode_leaves_the_text_alone() {
        assert_eq!(clean(TextCleanup::Transformers, "Don’t"), "Don’t");
    }
}
