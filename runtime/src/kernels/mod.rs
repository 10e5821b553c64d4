//! owlet's own SIMD kernels, for what tract does not do (or does slowly):
//! embedding arithmetic (similarity, search; `dot_i8` and `dot_f16` for int8 and
//! f16 vectors), int8 matrix products for quantized
//! graphs (`int8`), softmax over short rows (`softmax`), layer norms
//! (`layer_norm`), CLIP's quick-GELU (`quick_gelu`) and attention's
//! activation-by-activation products (`small_gemm`).
//!
//! Every op has a scalar reference (`scalar.rs`, or `reference` in the softmax,
//! layer-norm, quick-GELU and small-GEMM modules); faster versions are picked behind run-time
//! CPU feature detection, once, at first use. `Kernels::Scalar` (options.rs) forces the
//! references (to A/B or to rule a kernel out). Every kernel is compared with its
//! reference on random inputs of ragged lengths (`harness.rs`, each module's tests).

#[cfg(target_arch = "aarch64")]
mod aarch64_neon;
pub mod dot_f16;
pub mod dot_i8;
#[cfg(test)]
mod harness;
pub mod int8;
pub mod layer_norm;
pub mod quick_gelu;
pub mod scalar;
pub mod small_gemm;
pub mod softmax;
#[cfg(target_arch = "x86_64")]
mod x86_64_avx2;
#[cfg(target_arch = "x86_64")]
mod x86_64_avx512;

use std::sync::OnceLock;

/// A dot-product kernel.
pub type DotF32 = fn(&[f32], &[f32]) -> f32;

/// The kernel table.
#[derive(Clone, Copy)]
pub struct Kernels {
    /// Dot product of two f32 slices of equal length.
    pub dot_f32: DotF32,
    /// Which implementation `dot_f32` is, for logs and tests.
    pub dot_f32_name: &'static str,
}

impl std::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernels").field("dot_f32", &self.dot_f32_name).finish()
    }
}

/// The scalar reference table.
pub fn scalar() -> Kernels {
    Kernels { dot_f32: scalar::dot_f32, dot_f32_name: "scalar_dot_f32" }
}

/// Every implementation of `dot_f32` this CPU can run, reference first, best last.
#[cfg(any(test, feature = "internals"))]
pub fn dot_f32_candidates() -> Vec<(&'static str, DotF32)> {
    let mut v: Vec<(&'static str, DotF32)> = vec![("scalar_dot_f32", scalar::dot_f32)];
    for plug in plugs() {
        let mut k = scalar();
        plug(&mut k);
        if k.dot_f32_name != "scalar_dot_f32" {
            v.push((k.dot_f32_name, k.dot_f32));
        }
    }
    v
}

/// Each architecture's plugs, in increasing preference.
fn plugs() -> Vec<fn(&mut Kernels)> {
    #[allow(unused_mut)]
    let mut v: Vec<fn(&mut Kernels)> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        v.push(x86_64_avx2::plug);
        v.push(x86_64_avx512::plug);
    }
    #[cfg(target_arch = "aarch64")]
    v.push(aarch64_neon::plug);
    v
}

/// The best table for this CPU (or the scalar one under `Kernels::Scalar`).
pub fn best() -> Kernels {
    let mut k = scalar();
    if scalar_forced() {
        return k;
    }
    for plug in plugs() {
        plug(&mut k);
    }
    k
}

/// The process-wide table, chosen on first use and logged.
pub fn kernels() -> &'static Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    K.get_or_init(|| {
        let k = best();
        log::info!("owlet kernels: {k:?}");
        k
    })
}

/// Which implementation each kernel family runs in this process, as (family,
/// kernel): what a speed figure depends on besides the CPU (`owlet bench` prints
/// it, so that a figure reported from a board says which code made it).
pub fn chosen() -> Vec<(&'static str, &'static str)> {
    vec![
        ("int8 product", int8::best().name),
        ("layer norm", layer_norm::best().0),
        ("softmax", softmax::best().0),
        ("quick GELU", quick_gelu::best().0),
        ("small GEMM", small_gemm::best().0),
        ("f32 dot", kernels().dot_f32_name),
        ("f32 x int8 dot", dot_i8::best().0),
        ("f32 x f16 dot", dot_f16::best().0),
    ]
}

/// Dot product with the best kernel. Panics if the lengths differ (a caller bug).
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_f32 on slices of different lengths");
    (kernels().dot_f32)(a, b)
}

/// What a compiled variant of a float kernel needs of the CPU (the softmax,
/// layer-norm and small-GEMM modules compile one source several times).
#[derive(Clone, Copy)]
pub(crate) enum Needs {
    /// The baseline: the reference and the portable build (NEON on aarch64).
    Nothing,
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Needs {
    fn here(self) -> bool {
        match self {
            Needs::Nothing => true,
            #[cfg(target_arch = "x86_64")]
            Needs::Avx2Fma => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Needs::Avx512 => is_x86_feature_detected!("avx512f"),
        }
    }
}

/// The variants this CPU can run, in the order given (reference first, best last).
pub(crate) fn runnable<F: Copy>(all: &[(&'static str, F, Needs)]) -> Vec<(&'static str, F)> {
    all.iter().filter(|(_, _, needs)| needs.here()).map(|&(name, f, _)| (name, f)).collect()
}

/// The last of `candidates` (the best), or the first (the reference) under
/// `Kernels::Scalar`.
pub(crate) fn pick<F: Copy>(candidates: Vec<(&'static str, F)>) -> (&'static str, F) {
    let pick = if scalar_forced() { candidates.first() } else { candidates.last() };
    *pick.expect("the reference is always there")
}

/// `Kernels::Scalar`: every kernel family runs its reference (to A/B a kernel or
/// rule one out).
pub(crate) fn scalar_forced() -> bool {
    crate::options::current().kernels == crate::options::Kernels::Scalar
}
