//! The dot product of two f32 vectors: similarity and search over f32 embeddings
//! (`similarity`, `index`). The reference accumulates in f64; the SIMD kernels keep
//! four (AVX2, AVX-512) or eight (NEON) accumulators so that consecutive
//! multiply-adds do not wait on each other, chosen at run time.

use super::{Family, Kernel, Needs};

/// `a · b` over the shorter of the two (callers check the lengths).
pub type DotF32 = fn(&[f32], &[f32]) -> f32;

/// The reference: accumulated in f64, the exact-ish answer.
pub fn reference(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum::<f64>() as f32
}

#[cfg(target_arch = "x86_64")]
fn avx2(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: a candidate only where avx2 and fma were detected (`candidates`).
    unsafe { avx2_inner(a, b) }
}

#[cfg(target_arch = "x86_64")]
fn avx512(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: a candidate only where avx512f was detected (`candidates`).
    unsafe { avx512_inner(a, b) }
}

#[cfg(target_arch = "aarch64")]
fn neon(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: NEON is part of every aarch64 CPU.
    unsafe { neon_inner(a, b) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_inner(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512_inner(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
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

#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
unsafe fn neon_inner(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::aarch64::*;
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

/// Every kernel this CPU can run, reference first, best last.
fn candidates() -> Vec<Kernel<DotF32>> {
    super::runnable(&[
        ("reference_dot_f32", reference as DotF32, Needs::Nothing),
        #[cfg(target_arch = "aarch64")]
        ("aarch64_neon_dot_f32_32n", neon, Needs::Nothing),
        #[cfg(target_arch = "x86_64")]
        ("x86_64_avx2_dot_f32_32n", avx2, Needs::Avx2Fma),
        #[cfg(target_arch = "x86_64")]
        ("x86_64_avx512_dot_f32_64n", avx512, Needs::Avx512),
    ])
}

/// The f32 dot products.
pub static FAMILY: Family<Kernel<DotF32>> = Family::new("dot_f32", candidates);

/// `a · b` for an f32 query and an f32 row, with the kernel this process chose.
/// Panics if the lengths differ (a caller bug).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_f32 on slices of different lengths");
    (FAMILY.chosen().run)(a, b)
}
