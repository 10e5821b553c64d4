//! What tract and owlet chose for this CPU, so that a silent fall-back to generic
//! code fails the build. Under qemu, scripts/cross sets OWLET_EXPECT_TRACT_KERNEL (a
//! kernel family every f32 matmul must use, e.g. `arm64simd` on a Cortex-A72) and
//! OWLET_EXPECT_ISA (a feature tract must have detected, e.g. `dotprod` on an A76).

use owlet_runtime::engine::{Graph, InputSpec};
use tract_onnx::prelude::*;

use crate::common::*;

#[test]
fn tract_runs_clip_matmuls_on_simd_kernels_not_generic_code() {
    let g = Graph::load(
        &clip_bundle().join("vision.onnx"),
        "vision",
        &[InputSpec { name: "pixel_values", dtype: f32::datum_type(), rank: 4 }],
        2,
        owlet_runtime::device::Placement::CPU,
    )
    .unwrap();
    let kernels = g.matmul_kernels();
    let isa = format!("{:?}", tract_linalg::isa::native());
    eprintln!("tract ISA: {isa}; CLIP vision matmul kernels: {kernels:?}");
    assert!(!kernels.is_empty(), "no matmul kernel found in the plan");
    assert!(kernels.iter().all(|k| !k.contains("generic")), "generic kernels: {kernels:?}");
    if let Ok(family) = std::env::var("OWLET_EXPECT_TRACT_KERNEL") {
        assert!(kernels.iter().all(|k| k.contains(&family)), "expected {family} kernels, got {kernels:?}");
    }
    if let Ok(feature) = std::env::var("OWLET_EXPECT_ISA") {
        assert!(isa.to_lowercase().contains(&feature.to_lowercase()), "expected {feature} in {isa}");
    }
}
