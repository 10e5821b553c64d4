//! x86-64 AVX2 + FMA kernels.

use std::arch::x86_64::*;

use super::Kernels;

pub fn plug(k: &mut Kernels) {
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        k.dot_f32 = x86_64_avx2_dot_f32_32n;
        k.dot_f32_name = "x86_64_avx2_dot_f32_32n";
    }
}

fn x86_64_avx2_dot_f32_32n(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: plugged only after avx2 and fma were detected on this CPU.
    unsafe { dot(a, b) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let body = n / 32 * 32;
    // Four independent accumulators hide the FMA latency.
    let mut acc = [_mm256_setzero_ps(); 4];
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut i = 0;
    while i < body {
        for (j, s) in acc.iter_mut().enumerate() {
            // SAFETY: i + 8 * j + 8 <= body <= n; unaligned loads.
            let (x, y) =
                unsafe { (_mm256_loadu_ps(pa.add(i + 8 * j)), _mm256_loadu_ps(pb.add(i + 8 * j))) };
            *s = _mm256_fmadd_ps(x, y, *s);
        }
        i += 32;
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let lo = _mm256_castps256_ps128(s);
    let hi = _mm256_extractf128_ps(s, 1);
    let q = _mm_add_ps(lo, hi);
    let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    let q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
    let mut total = _mm_cvtss_f32(q);
    for t in body..n {
        total += a[t] * b[t];
    }
    total
}
