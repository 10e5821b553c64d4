//! Choosing the device (crate::device) where the build or the machine cannot give
//! the GPU: `auto` runs on the CPU, `cuda` is an error saying what is missing.
//! (The GPU itself: tests/it/cuda.rs, run by scripts/gpu-test.)

use owlet_runtime::device::{self, Device, DeviceChoice, GpuPrecision, Placement};
use owlet_runtime::models::clip::Clip;

use crate::common::*;

#[test]
fn auto_runs_on_the_cpu_when_no_gpu_can_be_used_and_cuda_says_why() {
    let Err(why) = device::cuda_usable() else {
        // This build and machine have a usable GPU (scripts/gpu-test): auto takes it.
        assert_eq!(Placement::choose(DeviceChoice::Auto, GpuPrecision::F32).unwrap().device, Device::Cuda);
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
    use owlet_runtime::bundle::Precision;
    let cuda = Placement::cuda(GpuPrecision::F16);
    let e = cuda.for_graph("vision", Precision::Int8).unwrap_err().to_string();
    assert!(e.contains("vision graph is int8") && e.contains("--device cpu"), "{e}");
    assert_eq!(cuda.for_graph("vision", Precision::Fp16).unwrap(), cuda);
    let auto = Placement { fallback: true, ..cuda };
    assert_eq!(auto.for_graph("text", Precision::Int8).unwrap(), Placement::CPU);
}
