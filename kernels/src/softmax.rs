//! Softmax over short rows: attention's `[batch, heads, q, k]` scores, one row per
//! query, `k` = 50 (CLIP vision), 77 (CLIP text) or the decoder's cache length.
//!
//! tract has a one-pass rows kernel on aarch64 only, and only for rows whose
//! length is a multiple of 4; everything else (all of x86-64, and 50 or 77 long
//! rows on ARM) runs three generic kernels per row (max, exp-and-sum, scale), each
//! copying a row's ragged tail into a scratch buffer. On rows this short that is
//! ~1.7 ns per score (measured, int8 CLIP text), more than the int8 products
//! around it cost per output.
//!
//! Here a row is three passes over registers: max, `exp(x - max)` stored and
//! summed, scale by 1/sum. `exp` is a polynomial written on 16 lanes so that the
//! compiler vectorises it; the same source is compiled for AVX-512 and for
//! AVX2+FMA (`#[target_feature]`, chosen at run time) and for the baseline,
//! which on aarch64 is NEON. `reference_row` (libm's `exp`, f64 sum) is what the
//! tests compare it to.

use super::{Family, Kernel, Needs};

const LANES: usize = 16;

/// exp(x) for x <= 0 (a softmax's `x - max`), within 2 ulp of libm's for
/// x >= -87.3, 0 below it (where f32's normal range ends), NaN for NaN.
#[inline(always)]
pub(super) fn exp_nonpositive<const FMA: bool>(x: f32) -> f32 {
    let fma = |a: f32, b: f32, c: f32| if FMA { a.mul_add(b, c) } else { a * b + c };
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts, the first exact in few bits, so x - n·ln2 stays exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5·2^23 rounds to an integer held in the low mantissa bits, and
    // stays a plain float add (a float-to-int cast would keep the loop scalar).
    const ROUND: f32 = 12_582_912.0;
    const LOW: f32 = -87.3;
    let clamped = x.max(LOW);
    let t = fma(clamped, LOG2E, ROUND);
    let n = t - ROUND;
    let r = fma(-n, LN2_LO, fma(-n, LN2_HI, clamped));
    // Cephes' expf polynomial on [-ln2/2, ln2/2].
    let mut p = 1.987_569_1e-4f32;
    p = fma(p, r, 1.398_199_9e-3);
    p = fma(p, r, 8.333_452e-3);
    p = fma(p, r, 4.166_579_6e-2);
    p = fma(p, r, 1.666_666_5e-1);
    p = fma(p, r, 5e-1);
    let e = fma(p, r * r, r + 1.0);
    // 2^n from n's bits: n is in -126..=0 here, a normal exponent.
    let n_int = t.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let scale = f32::from_bits(((n_int + 127) as u32) << 23);
    if x >= LOW {
        e * scale
    } else if x < LOW {
        0.0
    } else {
        x // NaN stays NaN
    }
}

/// `a` or `b`, whichever is larger; a NaN may or may not win (one `maxps`). A
/// NaN score is caught later, by the sum.
#[inline(always)]
fn max2(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

/// Lanes folded in halves (shuffles, not 15 dependent scalar steps).
#[inline(always)]
fn fold(mut v: [f32; LANES], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        for l in 0..width {
            v[l] = f(v[l], v[l + width]);
        }
        width /= 2;
    }
    v[0]
}

#[inline(always)]
fn block_at(row: &[f32], at: usize) -> [f32; LANES] {
    row[at..at + LANES].try_into().expect("a full block")
}

/// One row in place, at least `LANES` long: the body every instantiation below
/// shares. The ragged end is the row's last full block, overlapping the one
/// before: for the max that is harmless; for exp-and-sum only its new lanes count.
#[inline(always)]
fn softmax_long_row<const FMA: bool>(row: &mut [f32]) {
    let n = row.len();
    let last = n - LANES;
    let overlap = LANES - (n % LANES); // lanes of the last block already done (LANES: none)
    let mut m = block_at(row, last);
    for at in (0..last).step_by(LANES) {
        let b = block_at(row, at);
        for l in 0..LANES {
            m[l] = max2(m[l], b[l]);
        }
    }
    let max = fold(m, max2);
    // An all -inf row or a +inf score: the reference's answer (a NaN row, as
    // tract and PyTorch give). A NaN score is caught by the sum below.
    if !max.is_finite() {
        return reference_row(row);
    }
    let mut sums = [0f32; LANES];
    let full = n / LANES * LANES;
    for at in (0..full).step_by(LANES) {
        let mut b = block_at(row, at);
        for l in 0..LANES {
            b[l] = exp_nonpositive::<FMA>(b[l] - max);
            sums[l] += b[l];
        }
        row[at..at + LANES].copy_from_slice(&b);
    }
    if full < n {
        let old = block_at(row, last);
        let mut b = old;
        for l in 0..LANES {
            let fresh = l >= overlap;
            let e = exp_nonpositive::<FMA>(b[l] - max);
            b[l] = if fresh { e } else { old[l] };
            sums[l] += if fresh { e } else { 0.0 };
        }
        row[last..].copy_from_slice(&b);
    }
    let sum = fold(sums, |a, b| a + b);
    if sum.is_nan() {
        // A NaN score: the reference's max is NaN, and so is its whole row.
        row.fill(f32::NAN);
        return;
    }
    let inv = 1.0 / sum;
    for x in row.iter_mut() {
        *x *= inv;
    }
}

/// One row of any length: rows shorter than a block go through one padded with
/// -inf (whose exp is 0).
#[inline(always)]
fn softmax_row_body<const FMA: bool>(row: &mut [f32]) {
    if row.len() >= LANES {
        return softmax_long_row::<FMA>(row);
    }
    let mut block = [f32::NEG_INFINITY; LANES];
    block[..row.len()].copy_from_slice(row);
    let max = fold(block, max2);
    if !max.is_finite() {
        return reference_row(row);
    }
    let mut sums = [0f32; LANES];
    for l in 0..LANES {
        block[l] = exp_nonpositive::<FMA>(block[l] - max);
        sums[l] += block[l];
    }
    let sum = fold(sums, |a, b| a + b);
    if sum.is_nan() {
        row.fill(f32::NAN);
        return;
    }
    let inv = 1.0 / sum;
    for (x, e) in row.iter_mut().zip(block) {
        *x = e * inv;
    }
}

/// Softmax of each `row_len` long row of `data`, in place: the reference.
pub fn reference_rows(data: &mut [f32], row_len: usize) {
    for row in data.chunks_mut(row_len.max(1)) {
        reference_row(row);
    }
}

fn reference_row(row: &mut [f32]) {
    let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| if b > a || b.is_nan() { b } else { a });
    let mut sum = 0f64;
    for x in row.iter_mut() {
        *x = (*x - max).exp();
        sum += *x as f64;
    }
    for x in row.iter_mut() {
        *x = (*x as f64 / sum) as f32;
    }
}

/// A rows kernel: softmax of each `row_len` long row of the slice, in place.
pub type SoftmaxRows = fn(&mut [f32], usize);

/// Fused multiply-add where the baseline has it in hardware (aarch64); on
/// x86-64 `mul_add` without the `fma` feature would be a libm call.
pub(super) const BASELINE_FMA: bool = cfg!(target_arch = "aarch64");

fn portable_rows(data: &mut [f32], row_len: usize) {
    for row in data.chunks_mut(row_len.max(1)) {
        softmax_row_body::<BASELINE_FMA>(row);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn avx2_rows_inner(data: &mut [f32], row_len: usize) {
    for row in data.chunks_mut(row_len.max(1)) {
        softmax_row_body::<true>(row);
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2_rows(data: &mut [f32], row_len: usize) {
    // SAFETY: chosen only where avx2 and fma were detected (`candidates`).
    unsafe { avx2_rows_inner(data, row_len) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn avx512_rows_inner(data: &mut [f32], row_len: usize) {
    for row in data.chunks_mut(row_len.max(1)) {
        softmax_row_body::<true>(row);
    }
}

#[cfg(target_arch = "x86_64")]
fn avx512_rows(data: &mut [f32], row_len: usize) {
    // SAFETY: chosen only where avx512f was detected (`candidates`).
    unsafe { avx512_rows_inner(data, row_len) }
}

/// Every rows kernel this CPU can run, reference first, best last.
fn candidates() -> Vec<Kernel<SoftmaxRows>> {
    super::runnable(&[
        ("reference_softmax_rows", reference_rows as SoftmaxRows, Needs::Nothing),
        ("portable_softmax_rows", portable_rows, Needs::Nothing),
        #[cfg(target_arch = "x86_64")]
        ("x86_64_avx2_softmax_rows", avx2_rows, Needs::Avx2Fma),
        #[cfg(target_arch = "x86_64")]
        ("x86_64_avx512_softmax_rows", avx512_rows, Needs::Avx512),
    ])
}

/// The softmax rows kernels.
pub static FAMILY: Family<Kernel<SoftmaxRows>> = Family::new("softmax", candidates);

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i32 - b.to_bits() as i32).unsigned_abs()
    }

    #[test]
    fn exp_is_within_two_ulp_of_libm_over_its_range() {
        let mut worst = 0;
        let mut x = 0f32;
        while x > -87.3 {
            worst = worst.max(
                ulps(exp_nonpositive::<false>(x), x.exp())
                    .max(ulps(exp_nonpositive::<true>(x), x.exp())),
            );
            x -= 0.000_731;
        }
        assert!(worst <= 2, "worst {worst} ulp");
        for e in [exp_nonpositive::<false>, exp_nonpositive::<true>] {
            assert_eq!(e(0.0), 1.0);
            assert_eq!(e(-100.0), 0.0);
            assert_eq!(e(f32::NEG_INFINITY), 0.0);
            assert!(e(f32::NAN).is_nan());
        }
    }

    /// Rows of every length that matters (shorter than a block, ragged, CLIP's 50
    /// and 77), with masked scores as attention's causal and padding masks leave.
    fn ragged_rows() -> Vec<(String, (Vec<f32>, usize))> {
        let mut seed = 7u32;
        let mut rnd = move || {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            (seed >> 8) as f32 / (1 << 24) as f32
        };
        let mut cases = Vec::new();
        for row_len in [1, 2, 7, 15, 16, 17, 50, 77, 100, 257] {
            for rows in [1, 3, 12] {
                let mut data: Vec<f32> =
                    (0..rows * row_len).map(|_| (rnd() - 0.5) * 40.0).collect();
                for (i, x) in data.iter_mut().enumerate() {
                    if i % 5 == 3 && i % row_len != 0 {
                        *x = if i % 2 == 0 { f32::NEG_INFINITY } else { f32::MIN };
                    }
                }
                cases.push((format!("{rows} rows of {row_len}"), (data, row_len)));
            }
        }
        cases
    }

    fn run(kernel: Kernel<SoftmaxRows>, (data, row_len): &(Vec<f32>, usize)) -> Vec<f32> {
        let mut out = data.clone();
        (kernel.run)(&mut out, *row_len);
        out
    }

    crate::reference_test! {
        fn every_kernel_matches_the_reference_on_random_ragged_rows(FAMILY) {
            cases: ragged_rows(),
            run: run,
            agree: |_: &(Vec<f32>, usize), g: f32, w: f32| (g - w).abs() <= 1e-6 + 2e-6 * w.abs(),
        }
    }

    #[test]
    fn every_kernel_s_rows_sum_to_one() {
        for (label, case) in ragged_rows() {
            for kernel in FAMILY.candidates() {
                for row in run(kernel, &case).chunks(case.1) {
                    let s: f32 = row.iter().sum();
                    assert!((s - 1.0).abs() < 1e-5, "{kernel:?}, {label}: a row sums to {s}");
                }
            }
        }
    }

    #[test]
    fn rows_with_nan_or_no_finite_score_come_out_as_the_reference_says() {
        for row in [
            vec![1.0, f32::NAN, 2.0],
            vec![f32::NEG_INFINITY; 20],
            vec![0.0, f32::INFINITY, 1.0, 3.0],
            (0..40).map(|i| if i == 33 { f32::NAN } else { i as f32 }).collect(),
        ] {
            let mut want = row.clone();
            reference_rows(&mut want, row.len());
            for kernel in FAMILY.candidates() {
                let mut got = row.clone();
                (kernel.run)(&mut got, row.len());
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                        "{kernel:?} {row:?}: {got:?} vs {want:?}"
                    );
                }
            }
        }
    }
}
