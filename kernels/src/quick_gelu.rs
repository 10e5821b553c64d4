//! CLIP's activation, quick GELU: `x · sigmoid(α·x)` with α = 1.702, elementwise.
//!
//! tract runs it as the three ops the export wrote (`α·x`, `sigmoid`, `x · s`),
//! each a pass over the whole [tokens, 4·width] tensor: ~35 µs a layer on the
//! CLIP text encoder's 77 x 2048 (`owlet bench --profile`). Here it is one pass,
//! with softmax's polynomial exp (`exp_nonpositive`, 2 ulp): sigmoid(z) is
//! 1 / (1 + e) for z >= 0 and e / (1 + e) below, with e = exp(-|z|) in (0, 1], so
//! the exp never overflows. The same source is compiled for AVX-512, for
//! AVX2+FMA and for the baseline (NEON on aarch64). `reference` (libm's exp in
//! f64) is what the tests compare it to.

use super::{Family, Kernel, Needs};

use super::softmax::{exp_nonpositive, BASELINE_FMA};

const LANES: usize = 16;

/// A kernel: `data[i] = x · sigmoid(alpha · x)` in place.
pub type QuickGeluFn = fn(&mut [f32], f32);

#[inline(always)]
fn one<const FMA: bool>(x: f32, alpha: f32) -> f32 {
    let z = alpha * x;
    let e = exp_nonpositive::<FMA>(-z.abs());
    // One division for both signs: both sides of the select are computed.
    let r = 1.0 / (1.0 + e);
    let s = if z >= 0.0 { r } else { e * r };
    x * s
}

#[inline(always)]
fn body<const FMA: bool>(data: &mut [f32], alpha: f32) {
    let mut blocks = data.chunks_exact_mut(LANES);
    for b in &mut blocks {
        for x in b.iter_mut() {
            *x = one::<FMA>(*x, alpha);
        }
    }
    for x in blocks.into_remainder() {
        *x = one::<FMA>(*x, alpha);
    }
}

/// The reference: in f64 with libm's exp.
pub fn reference(data: &mut [f32], alpha: f32) {
    for x in data.iter_mut() {
        let v = *x as f64;
        *x = (v / (1.0 + (-(alpha as f64) * v).exp())) as f32;
    }
}

fn portable(data: &mut [f32], alpha: f32) {
    body::<BASELINE_FMA>(data, alpha)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn avx2_inner(data: &mut [f32], alpha: f32) {
    body::<true>(data, alpha)
}

#[cfg(target_arch = "x86_64")]
fn avx2(data: &mut [f32], alpha: f32) {
    // SAFETY: chosen only where avx2 and fma were detected (`candidates`).
    unsafe { avx2_inner(data, alpha) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn avx512_inner(data: &mut [f32], alpha: f32) {
    body::<true>(data, alpha)
}

#[cfg(target_arch = "x86_64")]
fn avx512(data: &mut [f32], alpha: f32) {
    // SAFETY: chosen only where avx512f was detected (`candidates`).
    unsafe { avx512_inner(data, alpha) }
}

/// Every kernel this CPU can run, reference first, best last.
fn candidates() -> Vec<Kernel<QuickGeluFn>> {
    super::runnable(&[
        ("reference_quick_gelu", reference as QuickGeluFn, Needs::Nothing),
        ("portable_quick_gelu", portable, Needs::Nothing),
        #[cfg(target_arch = "x86_64")]
        ("x86_64_avx2_quick_gelu", avx2, Needs::Avx2Fma),
        #[cfg(target_arch = "x86_64")]
        ("x86_64_avx512_quick_gelu", avx512, Needs::Avx512),
    ])
}

/// The quick-GELU kernels.
pub static FAMILY: Family<Kernel<QuickGeluFn>> = Family::new("quick_gelu", candidates);

#[cfg(test)]
mod tests {
    use super::*;

    /// Activations of either sign, small and large (|α·x| past the exp's -87.3
    /// floor on both sides), in slices of ragged lengths, for CLIP's α and 1.
    fn ragged_slices() -> Vec<(String, (Vec<f32>, f32))> {
        let mut seed = 11u32;
        let mut rnd = move || {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            (seed >> 8) as f32 / (1 << 24) as f32
        };
        let mut cases = Vec::new();
        for len in [1, 5, 15, 16, 17, 100, 2048, 3075] {
            let data: Vec<f32> =
                (0..len).map(|i| (rnd() - 0.5) * if i % 7 == 0 { 200.0 } else { 12.0 }).collect();
            for alpha in [1.702, 1.0] {
                cases.push((format!("len {len}, alpha {alpha}"), (data.clone(), alpha)));
            }
        }
        cases
    }

    fn run(kernel: Kernel<QuickGeluFn>, (data, alpha): &(Vec<f32>, f32)) -> Vec<f32> {
        let mut out = data.clone();
        (kernel.run)(&mut out, *alpha);
        out
    }

    crate::reference_test! {
        fn every_kernel_matches_the_reference_on_random_ragged_slices(FAMILY) {
            cases: ragged_slices(),
            run: run,
            agree: |_: &(Vec<f32>, f32), g: f32, w: f32| (g - w).abs() <= 1e-7 + 1e-6 * w.abs(),
        }
    }

    fn edges() -> [(&'static str, (Vec<f32>, f32)); 1] {
        let data = vec![
            0.0,
            -0.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            f32::MIN,
            1e-30,
            -1e-30,
        ];
        [("zeros, NaN, infinities, extremes", (data, 1.702))]
    }

    crate::reference_test! {
        fn edges_come_out_as_the_reference_says(FAMILY) {
            cases: edges(),
            run: run,
            agree: |_: &(Vec<f32>, f32), g: f32, w: f32| g == w || (g.is_nan() && w.is_nan()),
        }
    }
}
