//! Names that travel in topics and payloads: topic levels and labels.

/// Labels from a config file or a command: 1 to 256 of them, each 1 to 200 characters.
pub fn check_labels(labels: &[String]) -> std::result::Result<(), String> {
    if labels.is_empty() || labels.len() > 256 {
        return Err(format!("must be a list of 1 to 256 labels, not {}", labels.len()));
    }
    if let Some(l) = labels
        .iter()
        .find(|l| l.trim().is_empty() || l.chars().count() > 200 || l.chars().any(char::is_control))
    {
        return Err(format!("label {l:?} must be 1 to 200 printable characters"));
    }
    Ok(())
}

/// A label set as sent (a command, the web page): each label trimmed, then
/// checked as `check_labels` does.
pub fn clean_labels(labels: Vec<String>) -> std::result::Result<Vec<String>, String> {
    let labels: Vec<String> = labels.into_iter().map(|l| l.trim().to_string()).collect();
    check_labels(&labels)?;
    Ok(labels)
}

/// An identifier that is safe as one topic level and as one URL path segment:
/// 1 to `max` of `A-Z a-z 0-9 _ . -`, and not `.` or `..`.
pub fn is_plain_id(id: &str, max: usize) -> bool {
    !id.is_empty()
        && id.len() <= max
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && id != "."
        && id != ".."
}

pub fn valid_topic_level(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.chars().any(|c| matches!(c, '/' | '+' | '#') || c.is_whitespace() || c.is_control())
}
