//! `owlet-bridge fleet`'s tables: the merged hits, then each device and how it
//! answered (or that it did not).

use std::fmt::Write as _;

use owlet_protocol::fleet::StatusAnswer;

use super::client::{Outcome, SearchOutcome};

/// Unix milliseconds as `2026-12-07 08:01:02` (UTC).
fn utc(time_ms: u64) -> String {
    let Ok(ms) = i64::try_from(time_ms) else { return time_ms.to_string() };
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M:%S").to_string(),
        Err(_) => time_ms.to_string(),
    }
}

pub fn search(s: &SearchOutcome, timeout_s: f64) -> String {
    let o = &s.outcome;
    let total: usize = o.answers.iter().map(|a| a.answer.hits.len()).sum();
    let mut out = format!(
        "\"{}\": the {} best of {total} hits from {} device(s), {:.0} ms\n",
        s.text,
        s.hits.len(),
        o.answers.len(),
        o.elapsed_ms
    );
    if !s.hits.is_empty() {
        let _ = writeln!(
            out,
            "{:>6}  {:<16} {:<12} {:>8}  {:<19}  caption (or file)",
            "score", "device", "camera", "frame", "time (UTC)"
        );
    }
    for h in &s.hits {
        let _ = writeln!(
            out,
            "{:>6.3}  {:<16} {:<12} {:>8}  {:<19}  {}",
            h.hit.score,
            h.device,
            h.hit.camera,
            h.hit.frame_id,
            utc(h.hit.time_ms),
            h.hit.caption.as_deref().or(h.hit.source.as_deref()).unwrap_or("")
        );
    }
    out.push_str("devices:\n");
    for a in &o.answers {
        let r = &a.answer;
        let how = match &r.error {
            Some(e) => format!("answered in {:.0} ms: could not search: {e}", a.after_ms),
            None => format!(
                "answered in {:.0} ms: {} hit(s) of {} frames, searched in {:.1} ms",
                a.after_ms,
                r.hits.len(),
                r.searched,
                r.search_ms
            ),
        };
        let _ = writeln!(out, "  {:<16} {how}", a.device);
    }
    devices_without_answer(&mut out, o, timeout_s);
    out
}

pub fn status(o: &Outcome<StatusAnswer>, timeout_s: f64) -> String {
    let mut out = String::new();
    for a in &o.answers {
        let s = &a.answer;
        let frames =
            s.history_frames.map(|n| format!(", {n} frames in its history")).unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<16} online, owlet {}, up {:.0} s{frames} (answered in {:.0} ms)",
            s.device, s.version, s.uptime_s, a.after_ms
        );
        if s.cameras.is_empty() {
            out.push_str("  no cameras (answers searches of its history)\n");
        }
        for c in &s.cameras {
            let last = match &c.last {
                None => "no result yet".to_string(),
                Some(l) => {
                    let what = l.caption.as_deref().or(l.label.as_deref()).unwrap_or("-");
                    format!("{}  {what}", utc(l.time_ms))
                }
            };
            let _ = writeln!(out, "  {:<14} {last}", c.name);
        }
    }
    devices_without_answer(&mut out, o, timeout_s);
    if o.answers.is_empty() && o.missed.is_empty() && o.offline.is_empty() {
        out.push_str("no owlet device on this broker\n");
    }
    out
}

fn devices_without_answer<T>(out: &mut String, o: &Outcome<T>, timeout_s: f64) {
    for d in &o.missed {
        let _ = writeln!(out, "  {d:<16} MISSED: online, but no answer within {timeout_s} s");
    }
    for d in &o.offline {
        let _ = writeln!(out, "  {d:<16} offline");
    }
    if o.late > 0 {
        let _ = writeln!(out, "  ({} answer(s) came after the deadline and were dropped)", o.late);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_utc_and_a_time_out_of_range_is_shown_as_it_is() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(1_796_630_462_000), "2026-12-07 08:01:02");
        assert_eq!(super::utc(u64::MAX), u64::MAX.to_string());
    }
}
