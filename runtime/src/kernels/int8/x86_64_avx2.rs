//! x86-64 AVX2 int8 kernel: `vpmaddubsw` multiplies unsigned by signed bytes, so the
//! sign of x moves onto W (`vpsignb`) and |x| is the unsigned side; pairs of
//! products (at most 2 * 127 * 127, no saturation since both sides stay within
//! ±127) are summed into i32 by `vpmaddwd` against ones.

use std::arch::x86_64::*;

use super::QGemmKernel;

pub fn kernels() -> Vec<QGemmKernel> {
    if is_x86_feature_detected!("avx2") {
        vec![QGemmKernel { name: "x86_64_avx2_qgemm_i8_4x16", mr: 4, nr: 16, k_align: 4, micro: micro_4x16 }]
    } else {
        vec![]
    }
}

/// # Safety
/// As `MicroKernel`, on a CPU with AVX2.
#[target_feature(enable = "avx2")]
unsafe fn micro_4x16(k4: usize, a: *const i8, lda: usize, b: *const i8, c: *mut i32) {
    const MR: usize = 4;
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[_mm256_setzero_si256(); 2]; MR];
    for s in 0..k4 {
        // SAFETY: the panel has k4 steps of 16 x 4 bytes; rows have >= 4 * k4 bytes.
        unsafe {
            let w0 = _mm256_loadu_si256(b.add(s * 64) as *const __m256i);
            let w1 = _mm256_loadu_si256(b.add(s * 64 + 32) as *const __m256i);
            for (r, acc) in acc.iter_mut().enumerate() {
                let x = _mm256_set1_epi32((a.add(r * lda + s * 4) as *const i32).read_unaligned());
                let x_abs = _mm256_sign_epi8(x, x);
                let p0 = _mm256_maddubs_epi16(x_abs, _mm256_sign_epi8(w0, x));
                let p1 = _mm256_maddubs_epi16(x_abs, _mm256_sign_epi8(w1, x));
                acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(p0, ones));
                acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(p1, ones));
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        // SAFETY: c holds MR x 16 i32.
        unsafe {
            _mm256_storeu_si256(c.add(r * 16) as *mut __m256i, acc[0]);
            _mm256_storeu_si256(c.add(r * 16 + 8) as *mut __m256i, acc[1]);
        }
    }
}
