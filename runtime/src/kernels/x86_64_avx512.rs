//! x86-64 AVX-512F kernels.

use std::arch::x86_64::*;

use super::Kernels;

pub fn plug(k: &mut Kernels) {
    if is_x86_feature_detected!("avx512f") {
        k.dot_f32 = x86_64_avx512_dot_f32_64n;
        k.dot_f32_name = "x86_64_avx512_dot_f32_64n";
    }
}

fn x86_64_avx512_dot_f32_64n(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: plugged only after avx512f was detected on this CPU.
    unsafe { dot(a, b) }
}

#[target_feature(enable = "avx512f")]
unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let body = n / 64 * 64;
    let mut acc = [_mm512_setzero_ps(); 4];
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut i = 0;
    while i < body {
        for (j, s) in acc.iter_mut().enumerate() {
            // SAFETY: i + 16 * j + 16 <= body <= n; unaligned loads.
            let (x, y) = unsafe {
                (_mm512_loadu_ps(pa.add(i + 16 * j)), _mm512_loadu_ps(pb.add(i + 16 * j)))
            };
            *s = _mm512_fmadd_ps(x, y, *s);
        }
        i += 64;
    }
    let s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    let mut total = _mm512_reduce_add_ps(s);
    for t in body..n {
        total += a[t] * b[t];
    }
    total
}
