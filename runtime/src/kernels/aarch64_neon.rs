//! aarch64 NEON kernels (Raspberry Pi 4/5, Jetson). NEON is mandatory on aarch64,
//! so there is nothing to detect; the check documents the assumption.

use std::arch::aarch64::*;

use super::Kernels;

pub fn plug(k: &mut Kernels) {
    if std::arch::is_aarch64_feature_detected!("neon") {
        k.dot_f32 = aarch64_neon_dot_f32_32n;
        k.dot_f32_name = "aarch64_neon_dot_f32_32n";
    }
}

fn aarch64_neon_dot_f32_32n(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: plugged only when NEON is present (always, on aarch64).
    unsafe { dot(a, b) }
}

/// Eight accumulators, 32 lanes a step: an A76's or A78's two FMA pipes, 4 cycles
/// each, need eight independent sums to stay busy (four left the loop at half their
/// rate in `benches/qemu/mca.py`'s model; the loads bound it now).
#[target_feature(enable = "neon")]
unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let body = n / 32 * 32;
    let mut acc = [vdupq_n_f32(0.0); 8];
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut i = 0;
    while i < body {
        for (j, s) in acc.iter_mut().enumerate() {
            // SAFETY: i + 4 * j + 4 <= body <= n; vld1q has no alignment requirement.
            let (x, y) = unsafe { (vld1q_f32(pa.add(i + 4 * j)), vld1q_f32(pb.add(i + 4 * j))) };
            *s = vfmaq_f32(*s, x, y);
        }
        i += 32;
    }
    let s = vaddq_f32(
        vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])),
        vaddq_f32(vaddq_f32(acc[4], acc[5]), vaddq_f32(acc[6], acc[7])),
    );
    let mut total = vaddvq_f32(s);
    for t in body..n {
        total += a[t] * b[t];
    }
    total
}
