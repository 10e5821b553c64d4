//! How much memory this process holds, from Linux's /proc/self/status: the resident
//! set now (`VmRSS`) and its peak (`VmHWM`). Loading logs it after each stage of a
//! graph's way from file to plan (`RUST_LOG=owlet_runtime::memory=info`), so that a
//! copy of the weights that outlives its stage shows where it is; the quantize report
//! measures its runs with it. Elsewhere than Linux every reading is `None`.

/// Resident memory now and at its peak, in MiB.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Usage {
    /// Resident now (VmRSS).
    pub rss_mb: f64,
    /// The most resident so far (VmHWM).
    pub peak_mb: f64,
}

/// This process's resident memory now and its peak so far.
pub fn usage() -> Option<Usage> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = |field: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(field))?;
        line.split_whitespace().nth(1)?.parse::<f64>().ok()
    };
    Some(Usage { rss_mb: kb("VmRSS:")? / 1024.0, peak_mb: kb("VmHWM:")? / 1024.0 })
}

/// Makes the current resident set the peak (`clear_refs` 5), so that a later
/// `usage().peak_mb` is the peak of what ran since; returns the usage then. The
/// heap's free memory is given back first (`malloc_trim`): after loading, glibc
/// keeps up to 64 MiB of it, and what ran next would reuse it unseen.
pub fn reset_peak() -> Option<Usage> {
    trim_heap();
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    usage()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_heap() {
    // SAFETY: malloc_trim only returns free heap memory to the system.
    unsafe { libc::malloc_trim(0) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() {}

/// While one is alive, glibc's malloc gives every allocation of 64 KiB or more its
/// own mapping, so that freeing it returns the memory to the system at once.
///
/// Loading makes a second form of most weights (tract packs each matmul's weights
/// for its kernels, owlet packs its int8 ones, f16 ones are widened) and frees the
/// first. With glibc's default, a freed block raises the size below which blocks come
/// from the heap, so the next weights land on the heap; the originals freed there
/// stay resident, and a ViT-L/14 process held 1.5x its weights after planning
/// instead of 1.0x (BENCHMARKS.md, "Real-size models in a board's memory"). When the last one is dropped the
/// threshold goes to glibc's own maximum (what its dynamic rule reaches anyway after
/// a large free), so the activations of each run keep coming from the heap, and the
/// trim threshold to twice that, as glibc's dynamic rule would also have set it
/// (setting one by hand turns the rule off): left at its 128 KiB default, every run
/// gave its freed activations back to the OS and faulted them in again, which made
/// CLIP at batch 8 1.4x slower (int8 ViT-B/32, 163 against 118 ms; BENCHMARKS.md,
/// "Batch 8 lost 1.4x to the heap's trimming"). While loading, the default holds.
pub(crate) struct LoadingAllocations(());

static LOADING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl LoadingAllocations {
    pub(crate) fn begin() -> LoadingAllocations {
        if LOADING.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            set_mmap_threshold(64 << 10);
            set_trim_threshold(128 << 10); // glibc's default
        }
        LoadingAllocations(())
    }
}

impl Drop for LoadingAllocations {
    fn drop(&mut self) {
        if LOADING.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            // glibc's DEFAULT_MMAP_THRESHOLD_MAX: 32 MiB on 64-bit, 16 MiB on 32-bit.
            let mmap_threshold = (4 << 20) * std::mem::size_of::<usize>();
            set_mmap_threshold(mmap_threshold);
            set_trim_threshold(2 * mmap_threshold);
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_mmap_threshold(bytes: usize) {
    // SAFETY: mallopt only changes a malloc tunable; any value is accepted or refused
    // (returning 0) without effect on existing allocations.
    let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, bytes as libc::c_int) };
    if ok == 0 {
        log::debug!("mallopt(M_MMAP_THRESHOLD, {bytes}) refused");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_mmap_threshold(_bytes: usize) {}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_trim_threshold(bytes: usize) {
    // SAFETY: as set_mmap_threshold's.
    let ok = unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, bytes as libc::c_int) };
    if ok == 0 {
        log::debug!("mallopt(M_TRIM_THRESHOLD, {bytes}) refused");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_trim_threshold(_bytes: usize) {}

/// Logs the usage after one loading stage of a graph.
pub(crate) fn log_stage(role: &str, stage: &str) {
    if log::log_enabled!(log::Level::Info) {
        if let Some(u) = usage() {
            log::info!(
                "{role} graph {stage}: resident {:.0} MiB, peak {:.0} MiB",
                u.rss_mb,
                u.peak_mb
            );
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Other tests of this binary run beside this one and allocate too, so the
    /// margins are wide: a 256 MiB block must show as at least half of it.
    #[test]
    fn a_large_allocation_raises_the_peak_over_a_reset() {
        let before = reset_peak().expect("/proc/self/status is readable on Linux");
        assert!(before.peak_mb >= before.rss_mb, "{before:?}");
        let block = vec![1u8; 256 << 20];
        let during = usage().unwrap();
        assert!(during.peak_mb >= before.rss_mb + 128.0, "{before:?} -> {during:?}");
        drop(std::hint::black_box(block));
    }
}
