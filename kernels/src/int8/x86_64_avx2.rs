//! x86-64 AVX2 int8 kernels. `vpmaddubsw` multiplies unsigned by signed bytes and
//! sums pairs into a saturating i16; `vpmaddwd` against ones sums those into i32.
//!
//! - `x86_64_avx2_qgemm_u8i7_4x16` (the one used where there is no VNNI): x + 128
//!   as u8, W in [-64, 64] (`Operands::UnsignedX { w_max: 64 }`): pairs stay below
//!   i16's limit without any sign moves.
//! - `x86_64_avx2_qgemm_i8_4x16`: full 8-bit W; the sign of x moves onto W
//!   (`vpsignb`) and |x| is the unsigned side (pairs at most 2 · 127 · 127). Three
//!   more instructions per row and step: 47-54 GMAC/s on one thread against the
//!   u8i7 kernel's 61-74 on ViT-B/32's layers (`--bench int8`, BENCHMARKS.md); kept
//!   as the 8-bit-weight reference point for that benchmark.

use std::arch::x86_64::*;

use super::{Operands, QGemmKernel, RowParams, XScale};

pub fn kernels() -> Vec<QGemmKernel> {
    if is_x86_feature_detected!("avx2") {
        vec![
            QGemmKernel {
                name: "x86_64_avx2_qgemm_i8_4x16",
                mr: 4,
                nr: 16,
                k_align: 4,
                operands: Operands::Signed,
                micro: micro_4x16::<true>,
                micro_1: None,
            },
            QGemmKernel {
                name: "x86_64_avx2_qgemm_u8i7_4x16",
                mr: 4,
                nr: 16,
                k_align: 4,
                operands: Operands::UnsignedX { w_max: 64 },
                micro: micro_4x16::<false>,
                micro_1: None,
            },
        ]
    } else {
        vec![]
    }
}

/// `SIGN_MOVES`: x and W as int8 (`Operands::Signed`); `vpmaddubsw` wants one side
/// unsigned, so |x| is that side and x's sign moves onto W (`vpsignb`, three more
/// instructions per row and step). Without: x + 128 as u8 against W within ±64
/// (`Operands::UnsignedX { w_max: 64 }`), multiplied straight.
///
/// # Safety
/// As `MicroKernel`, on a CPU with AVX2; without `SIGN_MOVES`, every W in [-64, 64].
#[target_feature(enable = "avx2")]
unsafe fn micro_4x16<const SIGN_MOVES: bool>(
    k4: usize,
    a: *const i8,
    lda: usize,
    b: *const i8,
    c: *mut i32,
) {
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
                let (p0, p1) = if SIGN_MOVES {
                    let x_abs = _mm256_sign_epi8(x, x);
                    (
                        _mm256_maddubs_epi16(x_abs, _mm256_sign_epi8(w0, x)),
                        _mm256_maddubs_epi16(x_abs, _mm256_sign_epi8(w1, x)),
                    )
                } else {
                    (_mm256_maddubs_epi16(x, w0), _mm256_maddubs_epi16(x, w1))
                };
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

/// One row of activations to int8 (`super::quantize_rows`): returns the row's
/// scale and zero point (with the offset) and writes `q[..row.len()]`. The same
/// numbers as the portable code (`super::quantize_into`): the row's min and max (or
/// max |x|, or the static scale) passing over NaN, the same `RowParams`, then per
/// value `x · inv` (NaN as 0) plus the zero point, clamped to ±127, rounded to
/// nearest with ties to even (`vcvtps2dq` under Rust's default rounding mode), plus
/// the offset. Written out because the compiler's vectorisation of the portable
/// loop was 0.2 ns per element, as much as a small product's int8 multiplies.
///
/// # Safety
/// The CPU must have AVX2; `q` must be at least as long as `row`.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn quantize_row(
    row: &[f32],
    q: &mut [i8],
    x_offset: i32,
    xs: XScale,
) -> (f32, i32) {
    assert!(q.len() >= row.len());
    let n = row.len();
    let p = row.as_ptr();
    let params = RowParams::of(xs, || row_min_max(row), || row_max_abs(row));

    let vinv = _mm256_set1_ps(params.inv);
    let vzero = _mm256_set1_ps(params.zero as f32);
    let (lo, hi) = (_mm256_set1_ps(-127.0), _mm256_set1_ps(127.0));
    let off = _mm256_set1_epi32(x_offset);
    // packs/packus work within 128-bit lanes: this puts the 8 dwords back in order.
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    let to_i32 = |ix: usize| {
        let s = _mm256_mul_ps(_mm256_loadu_ps(p.add(ix)), vinv);
        let s = _mm256_and_ps(s, _mm256_cmp_ps::<_CMP_ORD_Q>(s, s)); // NaN -> 0
        let s = _mm256_add_ps(s, vzero);
        let s = _mm256_min_ps(_mm256_max_ps(s, lo), hi);
        _mm256_add_epi32(_mm256_cvtps_epi32(s), off)
    };
    let out = q.as_mut_ptr();
    let mut i = 0;
    while i + 32 <= n {
        let a = _mm256_packs_epi32(to_i32(i), to_i32(i + 8));
        let b = _mm256_packs_epi32(to_i32(i + 16), to_i32(i + 24));
        // With the offset, values are 1..=255 (u8 bits); without, -127..=127.
        let bytes =
            if x_offset == 0 { _mm256_packs_epi16(a, b) } else { _mm256_packus_epi16(a, b) };
        _mm256_storeu_si256(out.add(i) as *mut __m256i, _mm256_permutevar8x32_epi32(bytes, order));
        i += 32;
    }
    for (j, &x) in row.iter().enumerate().take(n).skip(i) {
        *out.add(j) = params.quantize(x, x_offset);
    }
    (params.scale, params.zero + x_offset)
}

/// A row's max |x|, passing over NaN, as `super::row_max_abs`.
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
unsafe fn row_max_abs(row: &[f32]) -> f32 {
    let n = row.len();
    let p = row.as_ptr();
    let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let (mut m0, mut m1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut i = 0;
    while i + 16 <= n {
        // max_ps returns its second operand when either is NaN: the running max.
        m0 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(p.add(i)), abs_mask), m0);
        m1 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(p.add(i + 8)), abs_mask), m1);
        i += 16;
    }
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_max_ps(m0, m1));
    let mut max = 0f32;
    for v in lanes.iter().chain(&row[i..]) {
        let a = v.abs();
        max = if a > max { a } else { max };
    }
    max
}

/// A row's min and max with 0 in the range, passing over NaN, as
/// `super::row_min_max`.
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
unsafe fn row_min_max(row: &[f32]) -> (f32, f32) {
    let n = row.len();
    let p = row.as_ptr();
    let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut i = 0;
    while i + 8 <= n {
        // min_ps / max_ps return their second operand when either is NaN.
        let v = _mm256_loadu_ps(p.add(i));
        lo = _mm256_min_ps(v, lo);
        hi = _mm256_max_ps(v, hi);
        i += 8;
    }
    let (mut l, mut h) = ([0f32; 8], [0f32; 8]);
    _mm256_storeu_ps(l.as_mut_ptr(), lo);
    _mm256_storeu_ps(h.as_mut_ptr(), hi);
    let (mut min, mut max) = (0f32, 0f32);
    for &v in l.iter().chain(&row[i..]) {
        min = if v < min { v } else { min };
    }
    for &v in h.iter().chain(&row[i..]) {
        max = if v > max { v } else { max };
    }
    (min, max)
}
