//! f32 `C = A · B` for attention's small products, one head at a time: scores
//! `Q · Kᵀ` (77 x 64 by 64 x 77 in CLIP's text tower) and `P · V` (77 x 77 by
//! 77 x 64). Both operands are activations, so nothing can be packed ahead of
//! time; per head the products are a few hundred thousand multiply-adds.
//!
//! `A` is `[m, k]` row-major and `B` `[k, n]` row-major with `n` padded to a
//! multiple of 16 (the caller packs both). A block of rows of `C` (8 by 32 with
//! AVX-512, 4 by 16 with AVX2) stays in registers while `k` runs: per step the
//! block's row of `B` is loaded once and each `A` value broadcast into it, so the
//! FMA units, not the loads, set the pace. Those two are written with
//! intrinsics; the portable body (plain Rust on fixed-size arrays, the baseline
//! and NEON build) is the fallback. `reference` is the triple loop the tests hold
//! them to.

use super::{Family, Kernel, Needs};

/// Columns of a block; the packed `B` and `C` rows are a multiple of it long.
pub const COLS: usize = 16;
/// Rows of a block; the packed `A` and `C` have a multiple of it.
pub const ROWS: usize = 8;

/// A kernel: `c[m, n] = a[m, k] · b[k, n]`, `m` a multiple of `ROWS` and `n` of
/// `COLS`, all row-major and dense.
pub type SmallGemm = fn(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize);

/// The reference: the plain triple loop, accumulating in f32 in `k` order.
pub fn reference(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    for i in 0..m {
        for j in 0..n {
            let mut s = 0f32;
            for p in 0..k {
                s += a[i * k + p] * b[p * n + j];
            }
            c[i * n + j] = s;
        }
    }
}

/// One `ROWS` x `W` block of `C` at (`i`, `j`).
#[inline(always)]
fn block<const W: usize, const FMA: bool>(
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    i: usize,
    j: usize,
    k: usize,
    n: usize,
) {
    // Row slices checked once, so the loop below carries no bounds checks.
    let rows: [&[f32]; ROWS] = std::array::from_fn(|r| &a[(i + r) * k..(i + r + 1) * k]);
    let b = &b[j..(k - 1) * n + j + W];
    let mut acc = [[0f32; W]; ROWS];
    for p in 0..k {
        let brow: &[f32; W] = b[p * n..p * n + W].try_into().expect("a full block");
        for r in 0..ROWS {
            let x = rows[r][p];
            for l in 0..W {
                acc[r][l] =
                    if FMA { x.mul_add(brow[l], acc[r][l]) } else { acc[r][l] + x * brow[l] };
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        c[(i + r) * n + j..(i + r) * n + j + W].copy_from_slice(acc_r);
    }
}

#[inline(always)]
fn body<const FMA: bool>(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    debug_assert!(m.is_multiple_of(ROWS) && n.is_multiple_of(COLS));
    if k == 0 {
        c[..m * n].fill(0.0);
        return;
    }
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "operands smaller than their shapes"
    );
    for i in (0..m).step_by(ROWS) {
        let mut j = 0;
        while j + 2 * COLS <= n {
            block::<{ 2 * COLS }, FMA>(a, b, c, i, j, k, n);
            j += 2 * COLS;
        }
        if j < n {
            block::<COLS, FMA>(a, b, c, i, j, k, n);
        }
    }
}

/// Fused multiply-add where the baseline has it in hardware (aarch64).
const BASELINE_FMA: bool = cfg!(target_arch = "aarch64");

fn portable(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    body::<BASELINE_FMA>(a, b, c, m, k, n)
}

/// AVX2 by hand, as the AVX-512 one below: blocks of 4 rows by 16 columns (8
/// accumulators, 2 `B` vectors and a broadcast in the 16 ymm registers).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn avx2_inner(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    use std::arch::x86_64::*;
    // Hard checks: the pointer arithmetic below relies on them.
    assert!(m.is_multiple_of(ROWS) && n.is_multiple_of(COLS), "m, n not padded to the block");
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "operands smaller than their shapes"
    );
    const R: usize = 4;
    let (pa, pb, pc) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
    // SAFETY (every pointer below): i + r < m, p < k, j + 16 <= n, so each access
    // is inside a [m, k], b [k, n] or c [m, n], checked above.
    unsafe {
        for i in (0..m).step_by(R) {
            for j in (0..n).step_by(COLS) {
                let mut acc0 = [_mm256_setzero_ps(); R];
                let mut acc1 = [_mm256_setzero_ps(); R];
                for p in 0..k {
                    let b0 = _mm256_loadu_ps(pb.add(p * n + j));
                    let b1 = _mm256_loadu_ps(pb.add(p * n + j + 8));
                    for r in 0..R {
                        let x = _mm256_set1_ps(*pa.add((i + r) * k + p));
                        acc0[r] = _mm256_fmadd_ps(x, b0, acc0[r]);
                        acc1[r] = _mm256_fmadd_ps(x, b1, acc1[r]);
                    }
                }
                for r in 0..R {
                    _mm256_storeu_ps(pc.add((i + r) * n + j), acc0[r]);
                    _mm256_storeu_ps(pc.add((i + r) * n + j + 8), acc1[r]);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    // SAFETY: chosen only where avx2 and fma were detected (`candidates`).
    unsafe { avx2_inner(a, b, c, m, k, n) }
}

/// AVX-512 by hand: the compiler, left to the generic body, folds `B`'s loads
/// into every multiply-add (22 loads per 16 FMAs, load-bound at ~50 GMAC/s).
/// Here each `B` vector is loaded once per step and kept in a register.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn avx512_inner(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    use std::arch::x86_64::*;
    // Hard checks: the pointer arithmetic below relies on them.
    assert!(m.is_multiple_of(ROWS) && n.is_multiple_of(COLS), "m, n not padded to the block");
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "operands smaller than their shapes"
    );
    let (pa, pb, pc) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
    // SAFETY (every pointer below): i + r < m, p < k, j + 16·v <= n, so each
    // access is inside a [m, k], b [k, n] or c [m, n], checked above.
    unsafe {
        for i in (0..m).step_by(ROWS) {
            let mut j = 0;
            while j < n {
                let wide = j + 2 * COLS <= n;
                let mut acc0 = [_mm512_setzero_ps(); ROWS];
                let mut acc1 = [_mm512_setzero_ps(); ROWS];
                if wide {
                    for p in 0..k {
                        let b0 = _mm512_loadu_ps(pb.add(p * n + j));
                        let b1 = _mm512_loadu_ps(pb.add(p * n + j + COLS));
                        for r in 0..ROWS {
                            let x = _mm512_set1_ps(*pa.add((i + r) * k + p));
                            acc0[r] = _mm512_fmadd_ps(x, b0, acc0[r]);
                            acc1[r] = _mm512_fmadd_ps(x, b1, acc1[r]);
                        }
                    }
                } else {
                    for p in 0..k {
                        let b0 = _mm512_loadu_ps(pb.add(p * n + j));
                        for (r, acc) in acc0.iter_mut().enumerate() {
                            let x = _mm512_set1_ps(*pa.add((i + r) * k + p));
                            *acc = _mm512_fmadd_ps(x, b0, *acc);
                        }
                    }
                }
                for r in 0..ROWS {
                    _mm512_storeu_ps(pc.add((i + r) * n + j), acc0[r]);
                    if wide {
                        _mm512_storeu_ps(pc.add((i + r) * n + j + COLS), acc1[r]);
                    }
                }
                j += if wide { 2 * COLS } else { COLS };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn avx512(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    // SAFETY: chosen only where avx512f was detected (`candidates`).
    unsafe { avx512_inner(a, b, c, m, k, n) }
}

/// Every kernel this CPU can run, reference first, best last.
fn candidates() -> Vec<Kernel<SmallGemm>> {
    super::runnable(&[
        ("reference_small_gemm", reference as SmallGemm, Needs::Nothing),
        ("portable_small_gemm", portable, Needs::Nothing),
        #[cfg(target_arch = "x86_64")]
        ("x86_64_avx2_small_gemm", avx2, Needs::Avx2Fma),
        #[cfg(target_arch = "x86_64")]
        ("x86_64_avx512_small_gemm", avx512, Needs::Avx512),
    ])
}

/// Whether this CPU has a kernel that beats tract's own path for these products
/// (its packing plus a matmul per head, one thread): the hand-written ones,
/// AVX-512 (~130 GMAC/s a thread on 80 x 64 x 80) and AVX2 (~62; the compiler's
/// version of the same loop reached ~50 and ~40, load-bound). Measured on the
/// int8 CLIP graphs, 2 threads, even the AVX2 kernel beat tract's AVX-512 path
/// at batch 8 (and mostly at batch 1). Elsewhere (aarch64, armv7) tract keeps
/// these products: its NEON kernels are hand-written, owlet's portable one is not.
pub fn beats_tract() -> bool {
    matches!(FAMILY.chosen().name, "x86_64_avx512_small_gemm" | "x86_64_avx2_small_gemm")
}

/// The small f32 matrix products.
pub static FAMILY: Family<Kernel<SmallGemm>> = Family::new("small_gemm", candidates);

#[cfg(test)]
mod tests {
    use super::*;

    /// A product's operands and shape.
    struct Product {
        a: Vec<f32>,
        b: Vec<f32>,
        m: usize,
        k: usize,
        n: usize,
    }

    /// Shapes around the blocks and attention's (80 rows, heads of 64, 77 tokens).
    fn shapes() -> Vec<(String, Product)> {
        let mut seed = 5u32;
        let mut rnd = move || {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            (seed >> 8) as f32 / (1 << 24) as f32 - 0.5
        };
        [(8, 1, 16), (8, 7, 32), (16, 64, 48), (80, 64, 80), (80, 77, 64), (24, 3, 96)]
            .into_iter()
            .map(|(m, k, n)| {
                let a: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
                let b: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
                (format!("{m}x{k}x{n}"), Product { a, b, m, k, n })
            })
            .collect()
    }

    crate::reference_test! {
        fn every_kernel_matches_the_reference_on_random_shapes(FAMILY) {
            cases: shapes(),
            run: |kernel: Kernel<SmallGemm>, p: &Product| {
                let mut c = vec![f32::NAN; p.m * p.n];
                (kernel.run)(&p.a, &p.b, &mut c, p.m, p.k, p.n);
                c
            },
            // Sums of k products in another order: error growing as sqrt(k).
            agree: |p: &Product, g: f32, w: f32| (g - w).abs() <= 1e-5 * (1.0 + p.k as f32).sqrt(),
        }
    }
}
