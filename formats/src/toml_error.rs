//! A TOML syntax or type error as (where, what): the line, and a reason that is
//! never empty.

/// `("line N", reason)` for an error of `toml::from_str(text)`.
///
/// toml's message is empty for some syntax errors (a control character in a
/// comment); the character at the error's position then says what is wrong.
pub(crate) fn locate(text: &str, e: &toml::de::Error) -> (String, String) {
    let start = e.span().map(|s| s.start.min(text.len()));
    let field = match start {
        Some(at) => {
            // `get`, not indexing: a position inside a character must not panic.
            let line = text.get(..at).map_or(1, |before| before.lines().count().max(1));
            format!("line {line}")
        }
        None => "(toml)".into(),
    };
    let mut reason = e.message().trim().to_string();
    if reason.is_empty() {
        let found = start.and_then(|at| text.get(at..)).and_then(|rest| rest.chars().next());
        reason = match found {
            Some(c) if c.is_control() => {
                format!("control character U+{:04X} is not allowed here", c as u32)
            }
            Some(c) => format!("unexpected {c:?}"),
            None => "unexpected end of file".into(),
        };
    }
    (field, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the fuzzer (bridge_config): U+0004 in a comment gave an empty reason.
    #[test]
    fn a_control_character_in_a_comment_is_named() {
        let text = "a = 1\n# comment \u{4} here\n";
        let e = toml::from_str::<toml::Value>(text).unwrap_err();
        assert_eq!(
            locate(text, &e),
            ("line 2".to_string(), "control character U+0004 is not allowed here".to_string())
        );
    }
}
