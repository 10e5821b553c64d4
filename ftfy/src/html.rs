//! Python's `html.unescape`, ported: OpenAI's CLIP tokenizer runs every text through
//! it (twice), so CLIP was trained on text decoded exactly this way, quirks included:
//! a reference without its `;` is decoded when its longest prefix is one of HTML5's
//! legacy names ("&copy2026" -> "©2026"), numeric references to C1 controls take
//! Windows-1252's characters, and references to nothing valid become U+FFFD or vanish.
//! The tables are generated from CPython's own (make_html_tables.py).

use std::borrow::Cow;

use crate::html_tables::{HTML5_ENTITIES, INVALID_CHARREFS, INVALID_CODEPOINTS};

/// Decodes every character reference in `text` as CPython's `html.unescape` does.
pub fn unescape(text: &str) -> Cow<'_, str> {
    if !text.contains('&') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        match reference_at(after) {
            Some((len, decoded)) => {
                out.push_str(&decoded);
                rest = &after[len..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The reference that starts right after a `&`, as CPython's pattern
/// `&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)` matches it: its length
/// in bytes and what it decodes to. None where the pattern does not match.
fn reference_at(s: &str) -> Option<(usize, Cow<'static, str>)> {
    if let Some(num) = s.strip_prefix('#') {
        let (digits, radix, skip) = match num.strip_prefix(['x', 'X']) {
            Some(hex) => (hex, 16, 2),
            None => (num, 10, 1),
        };
        let n = digits.bytes().take_while(|b| (*b as char).is_digit(radix)).count();
        if n == 0 {
            return None;
        }
        let semi = digits[n..].starts_with(';') as usize;
        // Any number past U+10FFFF decodes alike, so overflow can saturate.
        let value = u32::from_str_radix(&digits[..n], radix).unwrap_or(u32::MAX);
        return Some((skip + n + semi, numeric(value)));
    }
    let name_len: usize = s
        .chars()
        .take_while(|c| !matches!(c, '\t' | '\n' | '\x0c' | ' ' | '<' | '&' | '#' | ';'))
        .take(32)
        .map(char::len_utf8)
        .sum();
    if name_len == 0 {
        return None;
    }
    let len = name_len + s[name_len..].starts_with(';') as usize;
    Some((len, named(&s[..len])))
}

fn numeric(value: u32) -> Cow<'static, str> {
    if let Ok(i) = INVALID_CHARREFS.binary_search_by_key(&value, |&(n, _)| n) {
        return Cow::Borrowed(INVALID_CHARREFS[i].1);
    }
    if (0xD800..=0xDFFF).contains(&value) || value > 0x10FFFF {
        return Cow::Borrowed("\u{FFFD}");
    }
    if INVALID_CODEPOINTS.binary_search(&value).is_ok() {
        return Cow::Borrowed("");
    }
    // Surrogates and out-of-range values returned above: this is a char.
    Cow::Owned(char::from_u32(value).map(String::from).unwrap_or_default())
}

/// A named reference (with its `;` if it had one): the whole name if HTML5 knows it,
/// else its longest known prefix of two characters or more with the rest kept, else
/// the text as it was.
fn named(name: &str) -> Cow<'static, str> {
    if let Some(value) = entity(name) {
        return Cow::Borrowed(value);
    }
    let cuts: Vec<usize> = name.char_indices().map(|(i, _)| i).skip(2).collect();
    for &cut in cuts.iter().rev() {
        if let Some(value) = entity(&name[..cut]) {
            return Cow::Owned(format!("{value}{}", &name[cut..]));
        }
    }
    Cow::Owned(format!("&{name}"))
}

fn entity(name: &str) -> Option<&'static str> {
    HTML5_ENTITIES.binary_search_by(|&(n, _)| n.cmp(name)).ok().map(|i| HTML5_ENTITIES[i].1)
}

#[cfg(test)]
mod tests {
    use super::unescape;

    #[test]
    fn decodes_as_cpython_does() {
        // Each expectation is what CPython 3.12's html.unescape returns.
        let cases = [
            ("no references", "no references"),
            ("&amp; &lt;b&gt;", "& <b>"),
            ("&eacute;t&eacute;", "été"),
            ("&#8217;&#x2019;&#X41;", "\u{2019}\u{2019}A"),
            ("&copy 2026 &copy2026", "© 2026 ©2026"),
            ("&notit; &notin;", "¬it; ∉"),
            ("&#128; &#150;", "€ –"),
            (
                "&#0; &#x110000; &#55296; &#99999999999999999999;",
                "\u{FFFD} \u{FFFD} \u{FFFD} \u{FFFD}",
            ),
            ("a&#1;b &#xFFFF;c", "ab c"),
            ("&bogus; & alone &#; &#x; &", "&bogus; & alone &#; &#x; &"),
            ("&amp;amp;", "&amp;"),
            ("&ampersand", "&ersand"),
            ("&lt", "<"),
            ("&EACUTE; &Eacute;", "&EACUTE; É"),
            ("&#65", "A"),
            ("&caf\u{e9};", "&caf\u{e9};"),
        ];
        for (input, want) in cases {
            assert_eq!(unescape(input), want, "{input:?}");
        }
    }
}
