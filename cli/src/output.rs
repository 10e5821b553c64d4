//! Printing: aligned tables for people, JSON for machines.

use std::fmt::Write;

/// The device the command's model runs on, recorded at load and added to every
/// JSON result (a result says where it was computed).
static DEVICE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

pub fn set_device(device: owlet_runtime::device::Device) {
    let _ = DEVICE.set(device.to_string());
}

pub fn device() -> Option<&'static str> {
    DEVICE.get().map(String::as_str)
}

pub fn print_json(v: &serde_json::Value) {
    let mut v = v.clone();
    if let (Some(obj), Some(d)) = (v.as_object_mut(), device()) {
        obj.entry("device").or_insert_with(|| d.into());
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&v).expect("a serde_json::Value always serialises")
    );
}

/// `name  [a, b, c, ... ] (D-d)`: the first values, enough to eyeball.
pub fn embedding_line(name: &str, e: &[f32]) -> String {
    let head: Vec<String> = e.iter().take(6).map(|x| format!("{x:+.4}")).collect();
    let more = if e.len() > 6 { ", ..." } else { "" };
    format!("{name}  [{}{more}] ({}-d)", head.join(", "), e.len())
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// A rows x columns table with a title in the corner.
pub fn matrix_table(
    title: &str,
    rows: &[String],
    cols: &[String],
    m: &[Vec<f32>],
    decimals: usize,
) -> String {
    let rows: Vec<String> = rows.iter().map(|r| shorten(r, 40)).collect();
    let cols: Vec<String> = cols.iter().map(|c| shorten(c, 24)).collect();
    let w0 =
        rows.iter().map(|r| r.chars().count()).chain([title.chars().count()]).max().unwrap_or(0);
    let widths: Vec<usize> = cols.iter().map(|c| c.chars().count().max(decimals + 3)).collect();
    let mut s = String::new();
    let _ = write!(s, "{title:<w0$}");
    for (c, w) in cols.iter().zip(&widths) {
        let _ = write!(s, "  {c:>w$}");
    }
    s.push('\n');
    for (r, vals) in rows.iter().zip(m) {
        let _ = write!(s, "{r:<w0$}");
        for (v, w) in vals.iter().zip(&widths) {
            let _ = write!(s, "  {v:>w$.decimals$}");
        }
        s.push('\n');
    }
    s
}
