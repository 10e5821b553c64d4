//! x86-64 AVX-512 VNNI int8 kernel (Ice Lake and later Xeons, Sapphire Rapids, Zen 4).
//! `vpdpbusd` multiplies four u8 x i8 pairs and adds them to an i32 lane in one
//! instruction, with no saturating i16 step in between: x + 128 as u8 against the
//! full 8-bit weights (`Operands::UnsignedX { w_max: 127 }`), exact, where AVX2's
//! `vpmaddubsw` needs 7-bit weights for the same form.
//!
//! 8 rows x 32 columns: 16 accumulators, two weight vectors and a broadcast x of
//! AVX-512's 32 registers.

use std::arch::x86_64::*;

use super::{Operands, QGemmKernel};

pub fn kernels() -> Vec<QGemmKernel> {
    if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni") {
        vec![QGemmKernel {
            name: "x86_64_avx512vnni_qgemm_u8i8_8x32",
            mr: 8,
            nr: 32,
            k_align: 4,
            operands: Operands::UnsignedX { w_max: 127 },
            micro: micro_8x32,
            micro_1: None,
        }]
    } else {
        vec![]
    }
}

/// # Safety
/// As `MicroKernel`, on a CPU with AVX-512F and AVX-512 VNNI.
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn micro_8x32(k4: usize, a: *const i8, lda: usize, b: *const i8, c: *mut i32) {
    const MR: usize = 8;
    let mut acc = [[_mm512_setzero_si512(); 2]; MR];
    for s in 0..k4 {
        // SAFETY: the panel has k4 steps of 32 x 4 bytes; rows have >= 4 * k4 bytes.
        unsafe {
            let w0 = _mm512_loadu_si512(b.add(s * 128) as *const _);
            let w1 = _mm512_loadu_si512(b.add(s * 128 + 64) as *const _);
            for (r, acc) in acc.iter_mut().enumerate() {
                let x = _mm512_set1_epi32((a.add(r * lda + s * 4) as *const i32).read_unaligned());
                acc[0] = _mm512_dpbusd_epi32(acc[0], x, w0);
                acc[1] = _mm512_dpbusd_epi32(acc[1], x, w1);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        // SAFETY: c holds MR x 32 i32.
        unsafe {
            _mm512_storeu_si512(c.add(r * 32) as *mut _, acc[0]);
            _mm512_storeu_si512(c.add(r * 32 + 16) as *mut _, acc[1]);
        }
    }
}
