//! Byte-level BPE symbols back into text a person can read: CLIP's vocabulary (like
//! GPT-2's) spells every byte as a printable character ("é" is the two symbols "Ã©"),
//! and marks a word's end with "</w>".

use std::sync::LazyLock;

/// GPT-2's `bytes_to_unicode`, inverted: the byte each symbol character stands for.
static BYTE_OF_SYMBOL: LazyLock<Vec<(char, u8)>> = LazyLock::new(|| {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut next = 256u32;
    let mut table: Vec<(char, u8)> = (0..=255u8)
        .map(|b| {
            let code = if printable(b) {
                b as u32
            } else {
                next += 1;
                next - 1
            };
            (char::from_u32(code).expect("below U+0200"), b)
        })
        .collect();
    table.sort_unstable();
    table
});

/// A vocabulary symbol as text: its bytes decoded as UTF-8, a word's end ("</w>") as
/// a trailing space, and bytes that are only part of a character (a piece of an emoji
/// split over two tokens) as `<e2 80>`.
pub fn readable_piece(symbol: &str) -> String {
    let (body, word_end) = match symbol.strip_suffix("</w>") {
        Some(body) => (body, true),
        None => (symbol, false),
    };
    let mut bytes = Vec::with_capacity(body.len());
    for c in body.chars() {
        match BYTE_OF_SYMBOL.binary_search_by_key(&c, |&(s, _)| s) {
            Ok(i) => bytes.push(BYTE_OF_SYMBOL[i].1),
            // Not a byte symbol: keep the character itself.
            Err(_) => bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    let mut out = String::new();
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(text) => {
                out.push_str(text);
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(good).expect("checked valid"));
                let n = e.error_len().unwrap_or(bad.len());
                let hex: Vec<String> = bad[..n].iter().map(|b| format!("{b:02x}")).collect();
                out.push_str(&format!("<{}>", hex.join(" ")));
                rest = &bad[n..];
            }
        }
    }
    if word_end {
        out.push(' ');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::readable_piece;

    #[test]
    fn symbols_read_as_text() {
        assert_eq!(readable_piece("cafÃ©</w>"), "café ");
        assert_eq!(readable_piece("don"), "don");
        assert_eq!(readable_piece("'t</w>"), "'t ");
        // GPT-2's space symbol.
        assert_eq!(readable_piece("Ġcat"), " cat");
        // The first two bytes of U+1F600 (f0 9f 98 80) in one token.
        assert_eq!(readable_piece("ðŁ"), "<f0 9f>");
    }
}
