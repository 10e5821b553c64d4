//! Layer normalisation over rows: `y = (x - mean) / sqrt(var + eps) * gamma + beta`
//! per row of `d` values (every transformer layer has two).
//!
//! tract expands ONNX's LayerNormalization into six element-wise and reduction
//! ops (a mean, a subtraction, an RMS norm, a scale, a shift, their temporaries),
//! each a pass over the activations: measured ~7 ms of thread time per int8 CLIP
//! text batch of 8. Here a row is two passes that stay in registers and cache:
//! the mean, then the variance about it (two-pass, as stable as the reference),
//! and one that writes the output. As the softmax kernel, the source is written
//! on 16 lanes and compiled for AVX-512, AVX2+FMA and the baseline (NEON on
//! aarch64); `reference_rows` (f64) is what the tests compare it to.

use super::{Family, Kernel, Needs};

const LANES: usize = 16;

/// A rows kernel: each `gamma.len()` long row of `x` normalised into the same row
/// of `y` (as long as `x`).
pub type LayerNormRows = fn(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, y: &mut [f32]);

/// The reference: f64 sums, libm's sqrt.
pub fn reference_rows(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, y: &mut [f32]) {
    let d = gamma.len().max(1);
    for (row, out) in x.chunks(d).zip(y.chunks_mut(d)) {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
        let inv = 1.0 / (var + eps as f64).sqrt();
        for (i, (o, &v)) in out.iter_mut().zip(row).enumerate() {
            *o = ((v as f64 - mean) * inv * gamma[i] as f64 + beta[i] as f64) as f32;
        }
    }
}

#[inline(always)]
fn lane_sum(v: [f32; LANES]) -> f32 {
    let mut v = v;
    let mut width = LANES / 2;
    while width > 0 {
        for l in 0..width {
            v[l] += v[l + width];
        }
        width /= 2;
    }
    v[0]
}

/// Sum of `f(x)` over the row, on lanes.
#[inline(always)]
fn row_sum(row: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            acc[l] += f(c[l]);
        }
    }
    lane_sum(acc) + chunks.remainder().iter().map(|&v| f(v)).sum::<f32>()
}

#[inline(always)]
fn rows_body(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, y: &mut [f32]) {
    let d = gamma.len();
    if d == 0 {
        return;
    }
    for (row, out) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
        let mean = row_sum(row, |v| v) / d as f32;
        let var = row_sum(row, |v| (v - mean) * (v - mean)) / d as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for i in 0..d {
            out[i] = (row[i] - mean) * inv * gamma[i] + beta[i];
        }
    }
}

fn portable_rows(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, y: &mut [f32]) {
    rows_body(x, gamma, beta, eps, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn avx2_rows_inner(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, y: &mut [f32]) {
    rows_body(x, gamma, beta, eps, y)
}

#[cfg(target_arch = "x86_64")]
fn avx2_rows(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, y: &mut [f32]) {
    // SAFETY: chosen only where avx2 and fma were detected (`candidates`).
    unsafe { avx2_rows_inner(x, gamma, beta, eps, y) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn avx512_rows_inner(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, y: &mut [f32]) {
    rows_body(x, gamma, beta, eps, y)
}

#[cfg(target_arch = "x86_64")]
fn avx512_rows(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, y: &mut [f32]) {
    // SAFETY: chosen only where avx512f was detected (`candidates`).
    unsafe { avx512_rows_inner(x, gamma, beta, eps, y) }
}

/// Every rows kernel this CPU can run, reference first, best last.
fn candidates() -> Vec<Kernel<LayerNormRows>> {
    super::runnable(&[
        ("reference_layer_norm_rows", reference_rows as LayerNormRows, Needs::Nothing),
        ("portable_layer_norm_rows", portable_rows, Needs::Nothing),
        #[cfg(target_arch = "x86_64")]
        ("x86_64_avx2_layer_norm_rows", avx2_rows, Needs::Avx2Fma),
        #[cfg(target_arch = "x86_64")]
        ("x86_64_avx512_layer_norm_rows", avx512_rows, Needs::Avx512),
    ])
}

/// The layer-norm rows kernels.
pub static FAMILY: Family<Kernel<LayerNormRows>> = Family::new("layer_norm", candidates);

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer's input, weights and bias.
    struct Rows {
        x: Vec<f32>,
        gamma: Vec<f32>,
        beta: Vec<f32>,
    }

    /// Rows of ragged widths around the blocks and of CLIP's (512, 768 + 1), some far
    /// from zero (the variance's stability).
    fn ragged_rows() -> Vec<(String, Rows)> {
        let mut seed = 11u32;
        let mut rnd = move || {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            (seed >> 8) as f32 / (1 << 24) as f32 - 0.5
        };
        let mut cases = Vec::new();
        for d in [1, 3, 15, 16, 17, 50, 64, 77, 512, 769] {
            for rows in [1, 2, 9] {
                let offset = if d % 2 == 0 { 100.0 } else { 0.0 };
                let x: Vec<f32> = (0..rows * d).map(|_| rnd() * 8.0 + offset).collect();
                let gamma: Vec<f32> = (0..d).map(|_| 1.0 + rnd()).collect();
                let beta: Vec<f32> = (0..d).map(|_| rnd()).collect();
                cases.push((format!("{rows} rows of {d}"), Rows { x, gamma, beta }));
            }
        }
        cases
    }

    crate::reference_test! {
        fn every_kernel_matches_the_reference_on_random_ragged_rows(FAMILY) {
            cases: ragged_rows(),
            run: |kernel: Kernel<LayerNormRows>, r: &Rows| {
                let mut y = vec![f32::NAN; r.x.len()];
                (kernel.run)(&r.x, &r.gamma, &r.beta, 1e-5, &mut y);
                y
            },
            agree: |_: &Rows, g: f32, w: f32| (g - w).abs() <= 2e-5 + 2e-5 * w.abs(),
        }
    }

    #[test]
    fn a_constant_row_is_beta_and_nan_stays_in_its_row() {
        let gamma = vec![2.0; 20];
        let beta: Vec<f32> = (0..20).map(|i| i as f32).collect();
        let mut x = vec![3.0; 40];
        x[25] = f32::NAN;
        for kernel in FAMILY.candidates() {
            let mut y = vec![0f32; 40];
            (kernel.run)(&x, &gamma, &beta, 1e-5, &mut y);
            assert_eq!(&y[..20], &beta[..], "{kernel:?}: constant row");
            assert!(y[20..].iter().all(|v| v.is_nan()), "{kernel:?}: the NaN row");
        }
    }
}
