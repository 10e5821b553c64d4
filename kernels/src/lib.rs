//! owlet-kernels: owlet's own SIMD kernels, for what tract does not do (or does slowly):
//! embedding arithmetic (similarity, search; `dot_i8` and `dot_f16` for int8 and
//! f16 vectors), int8 matrix products for quantized
//! graphs (`int8`), softmax over short rows (`softmax`), layer norms
//! (`layer_norm`), CLIP's quick-GELU (`quick_gelu`) and attention's
//! activation-by-activation products (`small_gemm`).
//!
//! Each operation is a kernel family (`family.rs`): a `static FAMILY` in its module
//! listing what this CPU runs, the scalar reference first (`reference` in each
//! module, `int8::scalar`) and the fastest last, picked behind run-time CPU feature
//! detection, once, at first use, and logged. A [`Choice`] installed before that
//! (owlet-runtime installs the one its `RuntimeOptions` say) forces the references
//! (to A/B or to rule a kernel out) or names one kernel of a family. Every kernel is compared with its reference on
//! random inputs of ragged lengths by a test that `reference_test!` declares in
//! each module (`harness.rs` for the dot products, `int8/harness.rs`).

use std::collections::BTreeMap;
use std::sync::OnceLock;

pub mod dot_f16;
pub mod dot_f32;
pub mod dot_i8;
mod family;
#[cfg(test)]
mod harness;
pub mod int8;
pub mod layer_norm;
pub mod quick_gelu;
pub mod small_gemm;
pub mod softmax;

#[cfg(test)]
pub(crate) use family::reference_test;
use family::AnyFamily;
pub use family::{Candidate, Family, Kernel};

/// What the process wants of the kernels besides the best each CPU runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Choice {
    /// Every family runs its reference (owlet-runtime's `Kernels::Scalar`).
    pub scalar: bool,
    /// One kernel by name for a family, keyed by the family's id (owlet-runtime's
    /// `RuntimeOptions::kernel_choice`).
    pub named: BTreeMap<String, String>,
}

static CHOICE: OnceLock<Choice> = OnceLock::new();

/// Makes `choice` the process's. Call it before the first kernel runs: once a
/// family has chosen (or another call installed another choice), the choice in
/// force stays and comes back as the error.
pub fn install(choice: Choice) -> Result<(), &'static Choice> {
    let installed = CHOICE.get_or_init(|| choice.clone());
    if *installed == choice {
        Ok(())
    } else {
        Err(installed)
    }
}

/// The choice in force (the default, the best kernels, if none was installed).
fn choice() -> &'static Choice {
    CHOICE.get_or_init(Choice::default)
}

/// Every family, by its id (`Choice::named`'s keys, the module's name).
static FAMILIES: [&(dyn AnyFamily + Sync); 8] = [
    &int8::FAMILY,
    &layer_norm::FAMILY,
    &softmax::FAMILY,
    &quick_gelu::FAMILY,
    &small_gemm::FAMILY,
    &dot_f32::FAMILY,
    &dot_i8::FAMILY,
    &dot_f16::FAMILY,
];

/// Which implementation each kernel family runs in this process, as (family,
/// kernel): what a speed figure depends on besides the CPU (`owlet bench` prints
/// it, so that a figure reported from a board says which code made it).
pub fn chosen() -> Vec<(&'static str, &'static str)> {
    FAMILIES.iter().map(|f| (f.id(), f.chosen_name())).collect()
}

/// The families' ids, for checking a [`Choice`] before installing it.
pub fn family_ids() -> impl Iterator<Item = &'static str> {
    FAMILIES.iter().map(|f| f.id())
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
pub(crate) fn runnable<F: Copy>(all: &[(&'static str, F, Needs)]) -> Vec<Kernel<F>> {
    all.iter()
        .filter(|(_, _, needs)| needs.here())
        .map(|&(name, run, _)| Kernel { name, run })
        .collect()
}

/// `Choice::scalar`: every kernel family runs its reference (to A/B a kernel or
/// rule one out).
pub(crate) fn scalar_forced() -> bool {
    choice().scalar
}
