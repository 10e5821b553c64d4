//! The dot product of an f32 query with an f16 row: searching f16 vectors. The
//! rows are half of f32's bytes; widening a row into a buffer and then taking an
//! f32 dot read it twice and ran at a third of the memory's pace (82 ms over 1M
//! 512-d rows, against 30 ms for their bytes). Here each row is widened in
//! registers as it is read: F16C/AVX2 eight values at a time, AVX-512 sixteen
//! (chosen at run time), a portable body elsewhere.

use super::{Family, Kernel, Needs};

use half::f16;

/// `a · b` with `b` widened to f32; `a` and `b` of equal length.
pub type DotF32F16 = fn(&[f32], &[f16]) -> f32;

/// The reference: one sum, in order.
pub fn reference(a: &[f32], b: &[f16]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y.to_f32()).sum()
}

/// Sixteen lanes summed separately, so the compiler can keep them in registers.
fn portable(a: &[f32], b: &[f16]) -> f32 {
    const LANES: usize = 16;
    let n = a.len().min(b.len());
    let whole = n / LANES * LANES;
    let mut acc = [0f32; LANES];
    for (x, y) in a[..whole].chunks_exact(LANES).zip(b[..whole].chunks_exact(LANES)) {
        for j in 0..LANES {
            acc[j] += x[j] * y[j].to_f32();
        }
    }
    let tail: f32 = a[whole..n].iter().zip(&b[whole..n]).map(|(x, y)| x * y.to_f32()).sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn avx2_inner(a: &[f32], b: &[f16]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let whole = n / 32 * 32;
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i < whole {
        for (j, acc) in acc.iter_mut().enumerate() {
            let o = i + 8 * j;
            // SAFETY: o + 8 <= whole <= n: 8 halves (16 bytes) of b and 8 floats of
            // a in bounds; f16 is a transparent u16.
            let wide = _mm256_cvtph_ps(_mm_loadu_si128(pb.add(o) as *const __m128i));
            *acc = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(o)), wide, *acc);
        }
        i += 32;
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), sum);
    let tail: f32 = a[whole..n].iter().zip(&b[whole..n]).map(|(x, y)| x * y.to_f32()).sum();
    lanes.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
fn avx2(a: &[f32], b: &[f16]) -> f32 {
    // SAFETY: chosen only where avx2, fma and f16c were detected (`candidates`).
    unsafe { avx2_inner(a, b) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn avx512_inner(a: &[f32], b: &[f16]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let whole = n / 64 * 64;
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    while i < whole {
        for (j, acc) in acc.iter_mut().enumerate() {
            let o = i + 16 * j;
            // SAFETY: o + 16 <= whole <= n: 16 halves (32 bytes) of b and 16 floats
            // of a in bounds.
            let wide = _mm512_cvtph_ps(_mm256_loadu_si256(pb.add(o) as *const __m256i));
            *acc = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(o)), wide, *acc);
        }
        i += 64;
    }
    let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    let tail: f32 = a[whole..n].iter().zip(&b[whole..n]).map(|(x, y)| x * y.to_f32()).sum();
    _mm512_reduce_add_ps(sum) + tail
}

#[cfg(target_arch = "x86_64")]
fn avx512(a: &[f32], b: &[f16]) -> f32 {
    // SAFETY: chosen only where avx512f was detected (`candidates`).
    unsafe { avx512_inner(a, b) }
}

/// Every kernel this CPU can run, reference first, best last.
fn candidates() -> Vec<Kernel<DotF32F16>> {
    #[allow(unused_mut)]
    let mut all = super::runnable(&[
        ("reference_dot_f32_f16", reference as DotF32F16, Needs::Nothing),
        ("portable_dot_f32_f16", portable, Needs::Nothing),
    ]);
    #[cfg(target_arch = "x86_64")]
    {
        // F16C is on every AVX2 CPU made, but it is its own feature: asked for.
        if is_x86_feature_detected!("f16c") {
            all.extend(super::runnable(&[
                ("x86_64_avx2_dot_f32_f16", avx2 as DotF32F16, Needs::Avx2Fma),
                ("x86_64_avx512_dot_f32_f16", avx512, Needs::Avx512),
            ]));
        }
    }
    all
}

/// The f32-by-f16 dot products.
pub static FAMILY: Family<Kernel<DotF32F16>> = Family::new("dot_f16", candidates);

/// `a · b` for an f32 query and an f16 row (stored embeddings), with the kernel this process chose.
/// Panics if the lengths differ (a caller bug).
#[inline]
pub fn dot(a: &[f32], b: &[f16]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_f16 on slices of different lengths");
    (FAMILY.chosen().run)(a, b)
}
