//! Choosing the device (crate::device) where the build or the machine cannot give
//! the GPU: `auto` runs on the CPU, `cuda` is an error saying what is missing.
//! (The GPU itself: tests/it/cuda.rs, run by scripts/gpu-test.)

use owlet_runtime::device::{self, Device, DeviceChoice, GpuPrecision, Placement};
use owlet_runtime::models::Clip;

use crate::common::*;

#[test]
fn auto_runs_on_the_cpu_when_no_gpu_can_be_used_and_cuda_says_why() {
    let Err(why) = device::cuda_usable() else {
        // This build and machine have a usable GPU (scripts/gpu-test): auto takes it.
        assert_eq!(
            Placement::choose(DeviceChoice::Auto, GpuPrecision::F32).unwrap().device,
            Device::Cuda
        );
        return;
    };
    assert!(why.contains("CUDA") || why.contains("cuda") || why.contains("not found"), "{why}");
    let auto = Placement::choose(DeviceChoice::Auto, GpuPrecision::F32).unwrap();
    assert_eq!(auto.device, Device::Cpu);
    let clip = Clip::load_on(clip_bundle(), auto).unwrap();
    assert_eq!(clip.device(), Device::Cpu);
    let e = Placement::choose(DeviceChoice::Cuda, GpuPrecision::F32).unwrap_err().to_string();
    assert!(e.contains("--device cuda") && e.contains(&why), "{e}");
}

#[test]
fn f16_compute_is_refused_on_the_cpu() {
    let e = Placement::choose(DeviceChoice::Cpu, GpuPrecision::F16).unwrap_err().to_string();
    assert!(e.contains("f16") && e.contains("cuda"), "{e}");
}

#[test]
fn int8_graphs_are_refused_on_cuda_and_moved_to_the_cpu_by_auto() {
    use owlet_runtime::Precision;
    let cuda = Placement::cuda(GpuPrecision::F16);
    let e = cuda.for_graph("vision", Precision::Int8).unwrap_err().to_string();
    assert!(e.contains("vision graph is int8") && e.contains("--device cpu"), "{e}");
    assert_eq!(cuda.for_graph("vision", Precision::Fp16).unwrap(), cuda);
    let auto = Placement { fallback: true, ..cuda };
    assert_eq!(auto.for_graph("text", Precision::Int8).unwrap(), Placement::CPU);
}

#[test]
fn f32_min_attention_masks_survive_the_f16_conversion() {
    // (1 - mask) * f32::MIN, as exported attention masks do: in f16 without
    // clamping, 0 * -inf is NaN. The conversion, on the CPU.
    use owlet_runtime::device::f16_compute::clamp_constants_to_f16;
    use tract_onnx::prelude::*;
    use tract_onnx::tract_core::floats::FloatPrecisionTranslator;
    use tract_onnx::tract_core::ops::math;
    use tract_onnx::tract_core::transform::ModelTransform;
    let mut m = TypedModel::default();
    let mask = m.add_source("mask", f32::fact([1, 4])).unwrap();
    let one = m.add_const("one", tensor2(&[[1f32]])).unwrap();
    let min = m.add_const("min", tensor2(&[[f32::MIN]])).unwrap();
    let inv = m.wire_node("inv", math::sub(), &[one, mask]).unwrap()[0];
    let bias = m.wire_node("bias", math::mul(), &[inv, min]).unwrap()[0];
    m.select_output_outlets(&[bias]).unwrap();
    let run = |mut m: TypedModel, clamp: bool| -> Vec<f32> {
        if clamp {
            assert_eq!(clamp_constants_to_f16(&mut m).unwrap(), 1);
        }
        FloatPrecisionTranslator::new(f32::datum_type(), f16::datum_type())
            .transform(&mut m)
            .unwrap();
        let input = tensor2(&[[1f32, 1., 0., 0.]]).cast_to::<f16>().unwrap().into_owned();
        let out = m
            .into_runnable()
            .unwrap()
            .run(tvec!(input.into_tvalue()))
            .unwrap()
            .remove(0)
            .into_tensor();
        out.cast_to::<f32>()
            .unwrap()
            .to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect()
    };
    assert!(
        run(m.clone(), false)[0].is_nan(),
        "the hazard this guards against is gone: revisit the clamp"
    );
    assert_eq!(run(m, true), vec![0., 0., -65504., -65504.]);
}

#[test]
fn large_fp16_weights_are_widened_once_at_load_not_on_every_run() {
    // An fp16 bundle's weight: an f16 constant behind a Cast to f32. At 1100 x 1024
    // its f32 form (4.5 MB) is over tract's constant-folding budget, so tract alone
    // leaves the Cast in the plan (run on every call: ViT-B/32's fp16 bundle ran at
    // 1.2-3.2x fp32's time); widen_f16_constants folds it.
    use owlet_runtime::device::f16_compute::widen_f16_constants;
    use tract_onnx::prelude::*;
    use tract_onnx::tract_core::ops::{cast::Cast, math};
    let (k, n) = (1100, 1024);
    let w: Vec<f16> = (0..k * n).map(|i| f16::from_f32((i % 97) as f32 / 97.0 - 0.5)).collect();
    let mut m = TypedModel::default();
    let x = m.add_source("x", f32::fact([k, n])).unwrap();
    let w = m
        .add_const("w", tract_ndarray::Array2::from_shape_vec((k, n), w).unwrap().into_tensor())
        .unwrap();
    let wide = m.wire_node("w.cast", Cast { to: f32::datum_type() }, &[w]).unwrap()[0];
    let y = m.wire_node("y", math::add(), &[x, wide]).unwrap()[0];
    m.select_output_outlets(&[y]).unwrap();
    let casts_in_plan = |m: TypedModel| {
        m.into_optimized().unwrap().nodes().iter().filter(|n| n.op_is::<Cast>()).count()
    };
    assert_eq!(
        casts_in_plan(m.clone()),
        1,
        "tract folds large casts by itself now: widen_f16_constants may go"
    );
    let mut widened = m.clone();
    assert_eq!(widen_f16_constants(&mut widened).unwrap(), 1);
    assert_eq!(casts_in_plan(widened.clone()), 0);
    // Same values as the cast would give.
    let input = Tensor::zero::<f32>(&[k, n]).unwrap();
    let run = |m: TypedModel| {
        m.into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap()
            .run(tvec!(input.clone().into_tvalue()))
            .unwrap()
            .remove(0)
    };
    assert_eq!(run(m), run(widened));
}
