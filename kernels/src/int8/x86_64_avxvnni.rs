//! x86-64 AVX-VNNI int8 kernel: `vpdpbusd` on 256-bit registers, for CPUs that
//! have VNNI without AVX-512 (Alder Lake and later Intel cores, including the
//! N100-class edge boxes; Zen 5 has it too). As the AVX-512 VNNI kernel: x + 128
//! as u8 against full 8-bit weights (`Operands::UnsignedX { w_max: 127 }`), four
//! pairs per i32 lane per instruction, exact, where AVX2's `vpmaddubsw` needs
//! 7-bit weights and a second instruction.
//!
//! 6 rows x 16 columns: 12 accumulators, two weight vectors and a broadcast x of
//! the 16 ymm registers.

use std::arch::x86_64::*;

use super::{Operands, QGemmKernel};

pub fn kernels() -> Vec<QGemmKernel> {
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("avxvnni") {
        vec![QGemmKernel {
            name: "x86_64_avxvnni_qgemm_u8i8_6x16",
            mr: 6,
            nr: 16,
            k_align: 4,
            operands: Operands::UnsignedX { w_max: 127 },
            micro: micro_6x16,
            micro_1: None,
        }]
    } else {
        vec![]
    }
}

/// # Safety
/// As `MicroKernel`, on a CPU with AVX2 and AVX-VNNI.
#[target_feature(enable = "avx2,avxvnni")]
unsafe fn micro_6x16(k4: usize, a: *const i8, lda: usize, b: *const i8, c: *mut i32) {
    const MR: usize = 6;
    let mut acc = [[_mm256_setzero_si256(); 2]; MR];
    for s in 0..k4 {
        // SAFETY: the panel has k4 steps of 16 x 4 bytes; rows have >= 4 * k4 bytes.
        unsafe {
            let w0 = _mm256_loadu_si256(b.add(s * 64) as *const __m256i);
            let w1 = _mm256_loadu_si256(b.add(s * 64 + 32) as *const __m256i);
            for (r, acc) in acc.iter_mut().enumerate() {
                let x = _mm256_set1_epi32((a.add(r * lda + s * 4) as *const i32).read_unaligned());
                acc[0] = _mm256_dpbusd_avx_epi32(acc[0], x, w0);
                acc[1] = _mm256_dpbusd_avx_epi32(acc[1], x, w1);
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
