//! aarch64 int8 kernels: `sdot` (ARMv8.2 dot product: Pi 5's Cortex-A76, Orin's
//! A78AE) where the CPU has it, plain NEON widening multiplies otherwise (Pi 4's
//! Cortex-A72).
//!
//! Rust's `vdotq_laneq_s32` is still unstable (stdarch_neon_dotprod), so the one
//! `sdot` instruction is inline assembly.

use std::arch::aarch64::*;
use std::arch::asm;

use super::{Operands, QGemmKernel};

pub fn kernels() -> Vec<QGemmKernel> {
    let mut v = vec![QGemmKernel {
        name: "aarch64_neon_qgemm_i8_2x16",
        mr: 2,
        nr: 16,
        k_align: 4,
        operands: Operands::Signed,
        micro: micro_neon_2x16,
    }];
    if std::arch::is_aarch64_feature_detected!("dotprod") {
        v.push(QGemmKernel {
            name: "aarch64_sdot_qgemm_i8_4x16",
            mr: 4,
            nr: 16,
            k_align: 16,
            operands: Operands::Signed,
            micro: micro_sdot_4x16,
        });
    }
    v
}

/// `acc[i] += Σ_t b[4i + t] * a[4L + t]`: four output channels against 4 bytes of x.
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn sdot_lane<const L: i32>(acc: int32x4_t, b: int8x16_t, a: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: register-only arithmetic; the CPU has dotprod (target feature).
    unsafe {
        asm!("sdot {acc:v}.4s, {b:v}.16b, {a:v}.4b[{l}]",
             acc = inout(vreg) acc, b = in(vreg) b, a = in(vreg) a, l = const L,
             options(pure, nomem, nostack, preserves_flags));
    }
    acc
}

/// # Safety
/// As `MicroKernel`, with 4 * k4 a multiple of 16 (k_align), on a CPU with dotprod.
#[target_feature(enable = "neon,dotprod")]
unsafe fn micro_sdot_4x16(k4: usize, a: *const i8, lda: usize, b: *const i8, c: *mut i32) {
    const MR: usize = 4;
    let mut acc = [[vdupq_n_s32(0); 4]; MR];
    // 16 bytes of each row cover four steps of 4 along K: one `sdot` lane each.
    for s16 in 0..k4 / 4 {
        // SAFETY: rows have 4 * k4 bytes (a multiple of 16); the panel k4 * 64.
        let x: [int8x16_t; MR] =
            std::array::from_fn(|r| unsafe { vld1q_s8(a.add(r * lda + s16 * 16)) });
        macro_rules! step {
            ($l:literal) => {{
                let base = (s16 * 4 + $l) * 64;
                // SAFETY: inside the panel (see above).
                let w: [int8x16_t; 4] =
                    std::array::from_fn(|q| unsafe { vld1q_s8(b.add(base + q * 16)) });
                for r in 0..MR {
                    for q in 0..4 {
                        acc[r][q] = sdot_lane::<$l>(acc[r][q], w[q], x[r]);
                    }
                }
            }};
        }
        step!(0);
        step!(1);
        step!(2);
        step!(3);
    }
    for (r, acc) in acc.iter().enumerate() {
        for (q, v) in acc.iter().enumerate() {
            // SAFETY: c holds MR x 16 i32.
            unsafe { vst1q_s32(c.add(r * 16 + q * 4), *v) };
        }
    }
}

/// Without `sdot`: 8 x 8 -> 16-bit products (`smull`), two steps of K summed in 16
/// bits (at most 2 * 127 * 127, no overflow: both sides stay within ±127), then
/// pairwise into 32 bits (`sadalp`).
///
/// # Safety
/// As `MicroKernel` (NEON is always there on aarch64).
#[target_feature(enable = "neon")]
unsafe fn micro_neon_2x16(k4: usize, a: *const i8, lda: usize, b: *const i8, c: *mut i32) {
    const MR: usize = 2;
    // Per row and channel quad: [lo, hi] halves, lanes (ch, k 0-1), (ch, k 2-3), ...
    let mut acc = [[[vdupq_n_s32(0); 2]; 4]; MR];
    let load_x = |r: usize, s: usize| -> int8x16_t {
        // SAFETY: rows have >= 4 * k4 bytes and s < k4.
        let word = unsafe { (a.add(r * lda + s * 4) as *const i32).read_unaligned() };
        vreinterpretq_s8_s32(vdupq_n_s32(word))
    };
    let load_w = |s: usize, q: usize| -> int8x16_t {
        // SAFETY: s < k4, inside the panel.
        unsafe { vld1q_s8(b.add(s * 64 + q * 16)) }
    };
    let mut s = 0;
    while s + 2 <= k4 {
        for r in 0..MR {
            let (x0, x1) = (load_x(r, s), load_x(r, s + 1));
            for q in 0..4 {
                let (w0, w1) = (load_w(s, q), load_w(s + 1, q));
                let lo = vmlal_s8(
                    vmull_s8(vget_low_s8(w0), vget_low_s8(x0)),
                    vget_low_s8(w1),
                    vget_low_s8(x1),
                );
                let hi = vmlal_high_s8(vmull_high_s8(w0, x0), w1, x1);
                acc[r][q][0] = vpadalq_s16(acc[r][q][0], lo);
                acc[r][q][1] = vpadalq_s16(acc[r][q][1], hi);
            }
        }
        s += 2;
    }
    if s < k4 {
        for r in 0..MR {
            let x0 = load_x(r, s);
            for q in 0..4 {
                let w0 = load_w(s, q);
                acc[r][q][0] =
                    vpadalq_s16(acc[r][q][0], vmull_s8(vget_low_s8(w0), vget_low_s8(x0)));
                acc[r][q][1] = vpadalq_s16(acc[r][q][1], vmull_high_s8(w0, x0));
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        for (q, [lo, hi]) in acc.iter().enumerate() {
            // lo lanes: (ch0 k01, ch0 k23, ch1 k01, ch1 k23); hi the same for ch2, ch3.
            // SAFETY: c holds MR x 16 i32.
            unsafe { vst1q_s32(c.add(r * 16 + q * 4), vpaddq_s32(*lo, *hi)) };
        }
    }
}
