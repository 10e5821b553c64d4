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
        // Two steps of K per iteration: K padded to 8 leaves no odd step.
        k_align: 8,
        operands: Operands::Signed,
        micro: micro_neon_2x16,
        micro_1: Some(micro_neon_1x16),
    }];
    if std::arch::is_aarch64_feature_detected!("dotprod") {
        v.push(QGemmKernel {
            name: "aarch64_sdot_qgemm_i8_4x16",
            mr: 4,
            nr: 16,
            k_align: 16,
            operands: Operands::Signed,
            micro: micro_sdot_4x16,
            micro_1: Some(micro_sdot_1x16),
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
    // SAFETY: as this function's.
    unsafe { sdot_tile::<4>(k4, a, lda, b, c) }
}

/// One row (a decoder step's), where the 4-row tile would multiply three rows of
/// padding.
///
/// # Safety
/// As `micro_sdot_4x16`, for one row.
#[target_feature(enable = "neon,dotprod")]
unsafe fn micro_sdot_1x16(k4: usize, a: *const i8, lda: usize, b: *const i8, c: *mut i32) {
    // SAFETY: as this function's.
    unsafe { sdot_tile::<1>(k4, a, lda, b, c) }
}

/// An `MR` x 16 tile of `sdot`s (the two kernels above, each a symbol of its own for
/// benches/qemu/mca.py).
///
/// # Safety
/// As `MicroKernel` for `MR` rows, with 4 * k4 a multiple of 16, on a CPU with dotprod.
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn sdot_tile<const MR: usize>(
    k4: usize,
    a: *const i8,
    lda: usize,
    b: *const i8,
    c: *mut i32,
) {
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

/// Without `sdot` (the Pi 4's Cortex-A72): 8 x 8 -> 16-bit products (`smull`,
/// `smull2`), two steps of K summed in 16 bits (`smlal`, `smlal2`: at most
/// 2 * 127 * 127, no overflow, as both sides stay within ±127), then pairwise into
/// 32 bits (`sadalp`).
///
/// The loop is written in assembly because the compiler's version of it did not fit
/// the register file: 16 accumulators, 8 weight registers (two steps of K for four
/// channel quads), 4 of x and 4 products in flight are the 32 NEON registers exactly,
/// and LLVM spilled accumulators to the stack and moved registers around on every
/// iteration (92 instructions for 32 multiplies and 16 `sadalp`, against 55 here,
/// the loop's branch aside;
/// `benches/qemu/mca.py` has the cycle model of both).
///
/// Register plan, per iteration (two steps of K, 8 bytes of each row of x):
/// - v16-v23: row 0's accumulators, channel quad q in v(16 + 2q) (channels 0-1 of
///   the quad, two partial sums each) and v(17 + 2q) (channels 2-3); v24-v31 row 1's.
/// - v4-v7: the weights of step s for quads 0-3 (16 bytes: 4 channels x 4 k), v8-v11
///   those of step s + 1.
/// - v0, v1: row 0's 4 bytes of step s and of s + 1, each repeated over the register
///   (`ld1r`), so that `smull` and `smull2` both meet them; v2, v3 row 1's.
/// - v12-v15: products of one quad (two rows x low and high half) being summed.
///
/// # Safety
/// As `MicroKernel` (NEON is always there on aarch64), with k4 even (k_align 8).
#[target_feature(enable = "neon")]
unsafe fn micro_neon_2x16(k4: usize, a: *const i8, lda: usize, b: *const i8, c: *mut i32) {
    debug_assert!(k4.is_multiple_of(2), "k_align 8 makes k4 even");
    // One quad of four channels for both rows: products of steps s and s + 1 summed
    // in 16 bits, then into the accumulators. (Left as written: rustfmt would put
    // each piece of each instruction on a line of its own.)
    #[rustfmt::skip]
    macro_rules! quad {
        ($w0:literal, $w1:literal, $r0lo:literal, $r0hi:literal, $r1lo:literal, $r1hi:literal) => {
            concat!(
                "smull  v12.8h, ", $w0, ".8b,  v0.8b\n",
                "smull2 v13.8h, ", $w0, ".16b, v0.16b\n",
                "smull  v14.8h, ", $w0, ".8b,  v2.8b\n",
                "smull2 v15.8h, ", $w0, ".16b, v2.16b\n",
                "smlal  v12.8h, ", $w1, ".8b,  v1.8b\n",
                "smlal2 v13.8h, ", $w1, ".16b, v1.16b\n",
                "smlal  v14.8h, ", $w1, ".8b,  v3.8b\n",
                "smlal2 v15.8h, ", $w1, ".16b, v3.16b\n",
                "sadalp ", $r0lo, ".4s, v12.8h\n",
                "sadalp ", $r0hi, ".4s, v13.8h\n",
                "sadalp ", $r1lo, ".4s, v14.8h\n",
                "sadalp ", $r1hi, ".4s, v15.8h\n",
            )
        };
    }
    // SAFETY: row 0 is read at a..a + 4 * k4 and row 1 at a + lda.., both inside
    // their rows (lda >= 4 * k4); the panel is read for k4 * 64 bytes; c is written
    // for 2 x 16 i32. Every NEON register is declared clobbered; no stack is used.
    unsafe {
        asm!(
            "movi v16.4s, #0", "movi v17.4s, #0", "movi v18.4s, #0", "movi v19.4s, #0",
            "movi v20.4s, #0", "movi v21.4s, #0", "movi v22.4s, #0", "movi v23.4s, #0",
            "movi v24.4s, #0", "movi v25.4s, #0", "movi v26.4s, #0", "movi v27.4s, #0",
            "movi v28.4s, #0", "movi v29.4s, #0", "movi v30.4s, #0", "movi v31.4s, #0",
            "cbz {n}, 2f",
            "1:",
            "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{b}], #64",
            "ld1 {{v8.16b, v9.16b, v10.16b, v11.16b}}, [{b}], #64",
            "ld1r {{v0.4s}}, [{a0}], #4",
            "ld1r {{v1.4s}}, [{a0}], #4",
            "ld1r {{v2.4s}}, [{a1}], #4",
            "ld1r {{v3.4s}}, [{a1}], #4",
            quad!("v4", "v8", "v16", "v17", "v24", "v25"),
            quad!("v5", "v9", "v18", "v19", "v26", "v27"),
            quad!("v6", "v10", "v20", "v21", "v28", "v29"),
            quad!("v7", "v11", "v22", "v23", "v30", "v31"),
            "subs {n}, {n}, #1",
            "b.ne 1b",
            "2:",
            // Each channel's two partial sums into one lane: quad q of a row is
            // addp(v(2q), v(2q + 1)) = channels 4q..4q + 3.
            "addp v16.4s, v16.4s, v17.4s",
            "addp v17.4s, v18.4s, v19.4s",
            "addp v18.4s, v20.4s, v21.4s",
            "addp v19.4s, v22.4s, v23.4s",
            "addp v24.4s, v24.4s, v25.4s",
            "addp v25.4s, v26.4s, v27.4s",
            "addp v26.4s, v28.4s, v29.4s",
            "addp v27.4s, v30.4s, v31.4s",
            "st1 {{v16.4s, v17.4s, v18.4s, v19.4s}}, [{c}], #64",
            "st1 {{v24.4s, v25.4s, v26.4s, v27.4s}}, [{c}]",
            n = inout(reg) k4 / 2 => _,
            a0 = inout(reg) a => _,
            a1 = inout(reg) a.add(lda) => _,
            b = inout(reg) b => _,
            c = inout(reg) c => _,
            out("v0") _, out("v1") _, out("v2") _, out("v3") _,
            out("v4") _, out("v5") _, out("v6") _, out("v7") _,
            out("v8") _, out("v9") _, out("v10") _, out("v11") _,
            out("v12") _, out("v13") _, out("v14") _, out("v15") _,
            out("v16") _, out("v17") _, out("v18") _, out("v19") _,
            out("v20") _, out("v21") _, out("v22") _, out("v23") _,
            out("v24") _, out("v25") _, out("v26") _, out("v27") _,
            out("v28") _, out("v29") _, out("v30") _, out("v31") _,
            options(nostack),
        );
    }
}

/// `micro_neon_2x16` for one row of x (a decoder step), which the two-row tile would
/// compute twice over: the same loop with row 1 taken out, so v14, v15 and v24-v31
/// are free and the products of two quads alternate between v12/v13 and v14/v15.
///
/// # Safety
/// As `MicroKernel` (NEON is always there on aarch64), with k4 even (k_align 8).
#[target_feature(enable = "neon")]
unsafe fn micro_neon_1x16(k4: usize, a: *const i8, _lda: usize, b: *const i8, c: *mut i32) {
    debug_assert!(k4.is_multiple_of(2), "k_align 8 makes k4 even");
    // (Left as written: rustfmt would put each piece of each instruction on a line
    // of its own.)
    #[rustfmt::skip]
    macro_rules! quad {
        ($w0:literal, $w1:literal, $lo:literal, $hi:literal, $p:literal, $q:literal) => {
            concat!(
                "smull  ", $p, ".8h, ", $w0, ".8b,  v0.8b\n",
                "smull2 ", $q, ".8h, ", $w0, ".16b, v0.16b\n",
                "smlal  ", $p, ".8h, ", $w1, ".8b,  v1.8b\n",
                "smlal2 ", $q, ".8h, ", $w1, ".16b, v1.16b\n",
                "sadalp ", $lo, ".4s, ", $p, ".8h\n",
                "sadalp ", $hi, ".4s, ", $q, ".8h\n",
            )
        };
    }
    // SAFETY: the row is read at a..a + 4 * k4 (lda >= 4 * k4 is not needed: one
    // row), the panel for k4 * 64 bytes; c is written for 16 i32. The registers
    // used are declared clobbered; no stack is used.
    unsafe {
        asm!(
            "movi v16.4s, #0", "movi v17.4s, #0", "movi v18.4s, #0", "movi v19.4s, #0",
            "movi v20.4s, #0", "movi v21.4s, #0", "movi v22.4s, #0", "movi v23.4s, #0",
            "cbz {n}, 2f",
            "1:",
            "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{b}], #64",
            "ld1 {{v8.16b, v9.16b, v10.16b, v11.16b}}, [{b}], #64",
            "ld1r {{v0.4s}}, [{a0}], #4",
            "ld1r {{v1.4s}}, [{a0}], #4",
            quad!("v4", "v8", "v16", "v17", "v12", "v13"),
            quad!("v5", "v9", "v18", "v19", "v14", "v15"),
            quad!("v6", "v10", "v20", "v21", "v12", "v13"),
            quad!("v7", "v11", "v22", "v23", "v14", "v15"),
            "subs {n}, {n}, #1",
            "b.ne 1b",
            "2:",
            "addp v16.4s, v16.4s, v17.4s",
            "addp v17.4s, v18.4s, v19.4s",
            "addp v18.4s, v20.4s, v21.4s",
            "addp v19.4s, v22.4s, v23.4s",
            "st1 {{v16.4s, v17.4s, v18.4s, v19.4s}}, [{c}]",
            n = inout(reg) k4 / 2 => _,
            a0 = inout(reg) a => _,
            b = inout(reg) b => _,
            c = inout(reg) c => _,
            out("v0") _, out("v1") _,
            out("v4") _, out("v5") _, out("v6") _, out("v7") _,
            out("v8") _, out("v9") _, out("v10") _, out("v11") _,
            out("v12") _, out("v13") _, out("v14") _, out("v15") _,
            out("v16") _, out("v17") _, out("v18") _, out("v19") _,
            out("v20") _, out("v21") _, out("v22") _, out("v23") _,
            options(nostack),
        );
    }
}
