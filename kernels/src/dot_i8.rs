//! The dot product of an f32 query with an int8 row: what searching int8 vectors
//! spends its time on (owlet-history's `VectorSet`, through `similarity::dot_i8`).
//! The rows are a quarter of f32's bytes,
//! so the search should run at the memory's pace; compiled for the x86-64
//! baseline (SSE2), or even for AVX2 by the compiler, the widening of int8 to f32
//! made it compute-bound instead (6.4 G values/s on an EPYC core, a fifth of the
//! memory's pace). The portable body (NEON on aarch64, SSE2 on x86-64) and, on
//! x86-64, AVX2 and AVX-512 kernels written with intrinsics (chosen at run
//! time): a sign-extending load, a conversion and a fused multiply-add per 8 or
//! 16 values, four accumulators.

use super::{Family, Kernel, Needs};

/// `a · b` with `b` widened to f32; `a` and `b` of equal length.
pub type DotF32I8 = fn(&[f32], &[i8]) -> f32;

/// The reference: one sum, in order.
pub fn reference(a: &[f32], b: &[i8]) -> f32 {
    a.iter().zip(b).map(|(x, &y)| x * y as f32).sum()
}

/// Lanes summed separately: wide enough for two AVX-512 (or four AVX2)
/// accumulators, so consecutive multiply-adds do not wait on each other.
const LANES: usize = 32;

#[inline(always)]
fn body(a: &[f32], b: &[i8]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let whole = n / LANES * LANES;
    let mut acc = [0f32; LANES];
    for (x, y) in a[..whole].chunks_exact(LANES).zip(b[..whole].chunks_exact(LANES)) {
        for j in 0..LANES {
            acc[j] += x[j] * y[j] as f32;
        }
    }
    let tail: f32 = a[whole..].iter().zip(&b[whole..]).map(|(x, &y)| x * y as f32).sum();
    // Pairwise, as the vector registers are reduced.
    let mut w = LANES;
    while w > 1 {
        w /= 2;
        for j in 0..w {
            acc[j] += acc[j + w];
        }
    }
    acc[0] + tail
}

fn portable(a: &[f32], b: &[i8]) -> f32 {
    body(a, b)
}

/// AVX2: eight int8 at a time sign-extended to i32, converted, multiply-added;
/// four accumulators.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_inner(a: &[f32], b: &[i8]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let whole = n / 32 * 32;
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i < whole {
        for (j, acc) in acc.iter_mut().enumerate() {
            let o = i + 8 * j;
            // SAFETY: o + 8 <= whole <= n: 8 bytes of b and 8 floats of a in bounds.
            let codes = _mm_loadl_epi64(pb.add(o) as *const __m128i);
            let wide = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(codes));
            *acc = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(o)), wide, *acc);
        }
        i += 32;
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), sum);
    let tail: f32 = a[whole..n].iter().zip(&b[whole..n]).map(|(x, &y)| x * y as f32).sum();
    lanes.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
fn avx2(a: &[f32], b: &[i8]) -> f32 {
    // SAFETY: chosen only where avx2 and fma were detected (`candidates`).
    unsafe { avx2_inner(a, b) }
}

/// AVX-512: sixteen int8 at a time; four accumulators.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn avx512_inner(a: &[f32], b: &[i8]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let whole = n / 64 * 64;
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    while i < whole {
        for (j, acc) in acc.iter_mut().enumerate() {
            let o = i + 16 * j;
            // SAFETY: o + 16 <= whole <= n: 16 bytes of b and 16 floats of a in bounds.
            let codes = _mm_loadu_si128(pb.add(o) as *const __m128i);
            let wide = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(codes));
            *acc = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(o)), wide, *acc);
        }
        i += 64;
    }
    let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    let tail: f32 = a[whole..n].iter().zip(&b[whole..n]).map(|(x, &y)| x * y as f32).sum();
    _mm512_reduce_add_ps(sum) + tail
}

#[cfg(target_arch = "x86_64")]
fn avx512(a: &[f32], b: &[i8]) -> f32 {
    // SAFETY: chosen only where avx512f was detected (`candidates`).
    unsafe { avx512_inner(a, b) }
}

/// Every kernel this CPU can run, reference first, best last.
fn candidates() -> Vec<Kernel<DotF32I8>> {
    super::runnable(&[
        ("reference_dot_f32_i8", reference as DotF32I8, Needs::Nothing),
        ("portable_dot_f32_i8", portable, Needs::Nothing),
        #[cfg(target_arch = "x86_64")]
        ("x86_64_avx2_dot_f32_i8", avx2, Needs::Avx2Fma),
        #[cfg(target_arch = "x86_64")]
        ("x86_64_avx512_dot_f32_i8", avx512, Needs::Avx512),
    ])
}

/// The f32-by-int8 dot products.
pub static FAMILY: Family<Kernel<DotF32I8>> = Family::new("dot_i8", candidates);

/// `a · b` for an f32 query and an int8 row (stored embeddings' codes, before their scale), with the kernel this process chose.
/// Panics if the lengths differ (a caller bug).
#[inline]
pub fn dot(a: &[f32], b: &[i8]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_i8 on slices of different lengths");
    (FAMILY.chosen().run)(a, b)
}
