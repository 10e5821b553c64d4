//! What this machine is, in the words a board owner would report a figure with:
//! the board (a Pi's or a Jetson's model string), the CPU cores by name, how many.
//! Read from /proc/cpuinfo and the device tree; whatever is not there is left out.

use std::collections::BTreeMap;

/// The Arm cores owlet's users have, by their `CPU part` (implementer 0x41, Arm).
const ARM_PARTS: &[(u32, &str)] = &[
    (0xd03, "Cortex-A53"),
    (0xd04, "Cortex-A35"),
    (0xd05, "Cortex-A55"),
    (0xd07, "Cortex-A57"),
    (0xd08, "Cortex-A72"),
    (0xd09, "Cortex-A73"),
    (0xd0a, "Cortex-A75"),
    (0xd0b, "Cortex-A76"),
    (0xd0c, "Neoverse-N1"),
    (0xd0d, "Cortex-A77"),
    (0xd41, "Cortex-A78"),
    (0xd42, "Cortex-A78AE"),
    (0xd44, "Cortex-X1"),
    (0xd4b, "Cortex-A78C"),
];

/// A one-line description: `board; CPU` where each is known, e.g.
/// `Raspberry Pi 5 Model B Rev 1.0; 4 x Cortex-A76` or `4 x AMD EPYC 7B13`.
pub fn describe() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let board = std::fs::read_to_string("/proc/device-tree/model")
        .ok()
        .map(|m| m.trim_end_matches('\0').trim().to_string())
        .filter(|m| !m.is_empty())
        .or_else(|| field(&cpuinfo, "Model"));
    let cpu = cores(&cpuinfo);
    match (board, cpu) {
        (Some(b), Some(c)) => format!("{b}; {c}"),
        (Some(b), None) => b,
        (None, Some(c)) => c,
        (None, None) => std::env::consts::ARCH.to_string(),
    }
}

/// The first value of `name` in /proc/cpuinfo's `name : value` lines.
fn field(cpuinfo: &str, name: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == name && !v.trim().is_empty()).then(|| v.trim().to_string())
    })
}

/// `N x model` per kind of core, big cores first as /proc/cpuinfo lists them
/// (`2 x Cortex-A76, 4 x Cortex-A55` on a big.LITTLE board).
fn cores(cpuinfo: &str) -> Option<String> {
    let mut kinds: BTreeMap<usize, (String, usize)> = BTreeMap::new();
    let mut order = 0;
    for block in cpuinfo.split("\n\n").filter(|b| b.contains("processor")) {
        let name = field(block, "model name").or_else(|| {
            let part = field(block, "CPU part")?;
            let part = u32::from_str_radix(part.trim_start_matches("0x"), 16).ok()?;
            let implementer = field(block, "CPU implementer").unwrap_or_default();
            Some(match ARM_PARTS.iter().find(|(p, _)| *p == part) {
                Some((_, n)) if implementer == "0x41" => n.to_string(),
                _ => format!("CPU part {part:#x} (implementer {implementer})"),
            })
        })?;
        match kinds.values_mut().find(|(n, _)| *n == name) {
            Some((_, count)) => *count += 1,
            None => {
                kinds.insert(order, (name, 1));
                order += 1;
            }
        }
    }
    let parts: Vec<String> = kinds.values().map(|(n, c)| format!("{c} x {n}")).collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_cores_are_named_from_their_part_numbers() {
        // A Pi 5's /proc/cpuinfo, two of its four cores.
        let pi5 = "processor\t: 0\nBogoMIPS\t: 108.00\nCPU implementer\t: 0x41\n\
                   CPU architecture: 8\nCPU part\t: 0xd0b\n\n\
                   processor\t: 1\nCPU implementer\t: 0x41\nCPU part\t: 0xd0b\n\n\
                   Revision\t: d04170\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n";
        assert_eq!(cores(pi5).as_deref(), Some("2 x Cortex-A76"));
        assert_eq!(field(pi5, "Model").as_deref(), Some("Raspberry Pi 5 Model B Rev 1.0"));
    }

    #[test]
    fn big_and_little_cores_are_counted_apart_and_unknown_parts_named_by_number() {
        let mixed = "processor : 0\nCPU implementer : 0x41\nCPU part : 0xd05\n\n\
                     processor : 1\nCPU implementer : 0x41\nCPU part : 0xd05\n\n\
                     processor : 2\nCPU implementer : 0x41\nCPU part : 0xd0b\n\n\
                     processor : 3\nCPU implementer : 0x51\nCPU part : 0x802\n";
        assert_eq!(
            cores(mixed).as_deref(),
            Some("2 x Cortex-A55, 1 x Cortex-A76, 1 x CPU part 0x802 (implementer 0x51)")
        );
    }

    #[test]
    fn x86_cores_use_their_model_name() {
        let x86 = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\n\n\
                   processor\t: 1\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(cores(x86).as_deref(), Some("2 x AMD EPYC 7B13"));
        assert_eq!(cores(""), None);
    }
}
