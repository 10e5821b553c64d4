//! Where graphs run: the CPU (tract's own kernels and ours) or an NVIDIA GPU through
//! tract's CUDA runtime (tract-cuda), which is built in only with the `cuda-12` or
//! `cuda-13` cargo feature (the CUDA driver API the build targets: JetPack 6 is 12).
//!
//! `--device auto` takes the GPU when the feature is built in and a GPU answers
//! with everything tract-cuda needs, and the CPU otherwise, saying why. Every
//! binary reports the device it chose in its log and in its results.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::error::{Error, Result};

#[cfg(feature = "internals")]
pub mod f16_compute;
#[cfg(not(feature = "internals"))]
pub(crate) mod f16_compute;

pub use owlet_formats::choices::{DeviceChoice, GpuPrecision};

/// Where a graph runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// The CPU, through tract (and owlet's kernels).
    Cpu,
    /// An NVIDIA GPU, through tract-cuda.
    Cuda,
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        })
    }
}

/// Where a bundle's graphs run and in what precision: what model loaders take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The device asked for.
    pub device: Device,
    /// The float type a GPU computes in (f32 or f16); the CPU ignores it.
    pub precision: GpuPrecision,
    /// Chosen by `auto`: a graph the GPU cannot run goes to the CPU instead of
    /// being an error.
    pub fallback: bool,
}

impl Placement {
    /// Everything on the CPU.
    pub const CPU: Placement =
        Placement { device: Device::Cpu, precision: GpuPrecision::F32, fallback: false };

    /// Everything on the GPU in `precision`; a graph it cannot run is an error.
    pub fn cuda(precision: GpuPrecision) -> Placement {
        Placement { device: Device::Cuda, precision, fallback: false }
    }

    /// Where a graph of the bundle stored in `stored` precision runs. tract-cuda has
    /// no int8 kernels: an int8 graph is an error on `cuda`, and runs on the CPU
    /// under `auto`.
    ///
    /// On the CPU, an fp16 graph computes in f16 where the CPU has f16 arithmetic
    /// (`f16_compute::cpu_computes_f16`), in f32 otherwise.
    #[cfg_attr(feature = "internals", visibility::make(pub))]
    pub(crate) fn for_graph(
        &self,
        role: &str,
        stored: crate::bundle::Precision,
    ) -> Result<Placement> {
        if self.device == Device::Cpu
            && stored == crate::bundle::Precision::Fp16
            && f16_compute::cpu_computes_f16()
        {
            log::info!(
                "the {role} graph is fp16 and this CPU has f16 arithmetic: it computes in f16"
            );
            return Ok(Placement { precision: GpuPrecision::F16, ..*self });
        }
        if self.device == Device::Cuda && stored == crate::bundle::Precision::Int8 {
            if self.fallback {
                log::info!("device auto: the {role} graph is int8, which tract-cuda cannot run: it runs on the CPU");
                return Ok(Placement::CPU);
            }
            return Err(Error::Device(format!(
                "the {role} graph is int8, which tract-cuda cannot run (no int8 kernels): \
                 use --device cpu, or an fp16/fp32 bundle on the GPU"
            )));
        }
        Ok(*self)
    }

    /// Resolve a choice into a placement, probing the GPU for `cuda` and `auto`.
    /// `cuda` that cannot be had is an error naming what is missing; `auto` then
    /// falls back to the CPU and logs why.
    pub fn choose(choice: DeviceChoice, precision: GpuPrecision) -> Result<Placement> {
        if choice == DeviceChoice::Cpu && precision == GpuPrecision::F16 {
            return Err(Error::Device(
                "--gpu-precision f16 needs the cuda device (on the CPU, owlet-quantize makes fp16 bundles)".into(),
            ));
        }
        let placement = match choice {
            DeviceChoice::Cpu => Placement::CPU,
            DeviceChoice::Cuda => {
                cuda_usable().map_err(|why| Error::Device(format!("--device cuda: {why}")))?;
                Placement::cuda(precision)
            }
            DeviceChoice::Auto => match cuda_usable() {
                Ok(()) => Placement { fallback: true, ..Placement::cuda(precision) },
                Err(why) => {
                    log::info!("device auto: using the CPU ({why})");
                    Placement::CPU
                }
            },
        };
        log::info!("running on {} ({})", placement.device, placement.describe());
        Ok(placement)
    }

    /// One line for logs: the device, its precision and whether it falls back.
    pub fn describe(&self) -> String {
        match self.device {
            Device::Cpu => match self.precision {
                GpuPrecision::F32 => "cpu".into(),
                GpuPrecision::F16 => "cpu f16".into(),
            },
            Device::Cuda => format!("cuda {:?}", self.precision).to_lowercase(),
        }
    }
}

/// Ok when the GPU path can be used now: the feature is built in, the driver is new
/// enough, and cudart, nvrtc, cublas, cudnn and the toolkit headers NVRTC needs are
/// found. Err says what is missing.
#[cfg_attr(feature = "internals", visibility::make(pub))]
pub(crate) fn cuda_usable() -> std::result::Result<(), String> {
    #[cfg(feature = "cuda")]
    {
        let report = cuda::probe();
        match report.problems().first() {
            None => Ok(()),
            Some(p) => Err(p.clone()),
        }
    }
    #[cfg(not(feature = "cuda"))]
    Err("this owlet was built without CUDA (cargo feature cuda-12 or cuda-13)".into())
}

/// What `owlet doctor` prints about the GPU path, line by line.
#[derive(Debug, Clone, Serialize)]
pub struct CudaReport {
    /// Whether this build has the CUDA path (cargo feature cuda-12 or cuda-13).
    pub built_in: bool,
    /// The CUDA driver API the build targets (e.g. 13000), when built in.
    pub api: Option<i32>,
    /// (library, found?, how it was looked for)
    pub libraries: Vec<(String, bool, String)>,
    /// The driver's version, or why it could not be read.
    pub driver: std::result::Result<String, String>,
    /// Where the CUDA headers NVRTC needs were found, or why not.
    pub headers: std::result::Result<PathBuf, String>,
    /// Where compiled kernels are kept, and whether every kernel library is there.
    pub kernel_cache: Option<(PathBuf, bool)>,
}

impl CudaReport {
    /// What stands between this machine and the GPU path, one line each (empty
    /// when it can run).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.built_in {
            out.push("this owlet was built without CUDA (cargo feature cuda-12 or cuda-13)".into());
            return out;
        }
        for (lib, found, how) in &self.libraries {
            if !found {
                out.push(format!("{lib} not found ({how})"));
            }
        }
        if let Err(e) = &self.driver {
            out.push(e.clone());
        }
        if let Err(e) = &self.headers {
            out.push(e.clone());
        }
        out
    }
}

#[cfg(not(feature = "cuda"))]
/// What `owlet doctor` reports of the GPU path on this machine.
pub fn cuda_report() -> CudaReport {
    CudaReport {
        built_in: false,
        api: None,
        libraries: Vec::new(),
        driver: Err("not built in".into()),
        headers: Err("not built in".into()),
        kernel_cache: None,
    }
}

#[cfg(feature = "cuda")]
/// What `owlet doctor` reports of the GPU path on this machine.
pub fn cuda_report() -> CudaReport {
    cuda::probe()
}

/// Compile tract-cuda's kernels into the cache now, so that the first model load
/// does not spend ~100 s in NVRTC. Returns how long it took (near zero when warm).
pub fn warm_kernel_cache() -> std::result::Result<std::time::Duration, String> {
    #[cfg(feature = "cuda")]
    return cuda::warm();
    #[cfg(not(feature = "cuda"))]
    Err("this owlet was built without CUDA".into())
}

#[cfg(feature = "cuda")]
#[cfg_attr(feature = "internals", visibility::make(pub))]
pub(crate) mod cuda {
    //! tract-cuda glue: probing, preparing a graph for the GPU, and the rewrites
    //! that keep CLIP's and BLIP-2's nodes on it.

    use std::path::{Path, PathBuf};

    use anyhow::Context;
    use tract_onnx::prelude::*;
    use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
    use tract_onnx::tract_core::ops::math;
    use tract_onnx::tract_core::ops::nn::GeluExact;
    use tract_onnx::tract_core::transform::ModelTransform;

    use super::{CudaReport, GpuPrecision};

    pub fn probe() -> CudaReport {
        // Each library on its own (tract-cuda's own check stops at the first missing
        // one). SAFETY: cudarc's probes only dlopen the library.
        let libraries = vec![
            ("libcuda (driver)", unsafe { cudarc::driver::sys::is_culib_present() }),
            ("cudart", unsafe { cudarc::runtime::sys::is_culib_present() }),
            ("nvrtc", unsafe { cudarc::nvrtc::sys::is_culib_present() }),
            ("cublas", unsafe { cudarc::cublas::sys::is_culib_present() }),
            ("cudnn", unsafe { cudarc::cudnn::sys::is_culib_present() }),
        ]
        .into_iter()
        .map(|(l, ok)| {
            (
                l.to_string(),
                ok,
                "dlopen through LD_LIBRARY_PATH and the system's library paths".to_string(),
            )
        })
        .collect::<Vec<_>>();
        let driver = if libraries.iter().all(|l| l.1) {
            tract_cuda::utils::ensure_cuda_runtime_dependencies("CUDA")
                .map(|_| "driver new enough, GPU answers".to_string())
                .map_err(|e| format!("{e:#}"))
        } else {
            Err("not checked: a CUDA library is missing".into())
        };
        CudaReport {
            built_in: true,
            api: Some(tract_cuda::utils::REQUIRED_CUDA_API),
            libraries,
            driver,
            headers: toolkit_headers(),
            kernel_cache: Some(kernel_cache()),
        }
    }

    /// NVRTC compiles tract's kernels against the toolkit's headers (cuda_fp16.h and
    /// CCCL): tract-cuda looks in CUDA_HOME, CUDA_PATH, /usr/local/cuda, then beside
    /// nvcc. Checked here because a missing header is a panic inside tract-cuda.
    fn toolkit_headers() -> std::result::Result<PathBuf, String> {
        let roots: Vec<PathBuf> = ["CUDA_HOME", "CUDA_PATH"]
            .iter()
            .filter_map(|v| std::env::var_os(v).map(PathBuf::from))
            .chain(std::iter::once(PathBuf::from("/usr/local/cuda")))
            .collect();
        for root in &roots {
            let mut dirs = vec![root.join("include")];
            if let Ok(entries) = std::fs::read_dir(root.join("targets")) {
                dirs.extend(entries.flatten().map(|e| e.path().join("include")));
            }
            if let Some(d) = dirs.into_iter().find(|d| d.join("cuda_fp16.h").exists()) {
                return Ok(d);
            }
        }
        Err(format!(
            "CUDA toolkit headers (cuda_fp16.h) not found in {}: NVRTC needs them \
             (apt: cuda-cudart-dev and cuda-cccl; or set CUDA_HOME)",
            roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ")
        ))
    }

    /// tract-cuda keeps compiled kernels under $XDG_CACHE_HOME/tract (~/.cache/tract).
    fn kernel_cache() -> (PathBuf, bool) {
        let dir = tract_cuda::kernels::cubin_dir().to_path_buf();
        let warm = cubins_in(&dir) >= tract_cuda::kernels::LibraryName::EAGER.len();
        (dir, warm)
    }

    fn cubins_in(dir: &Path) -> usize {
        let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
        entries
            .flatten()
            .map(|e| {
                if e.path().is_dir() {
                    cubins_in(&e.path())
                } else {
                    (e.path().extension() == Some("cubin".as_ref())) as usize
                }
            })
            .sum()
    }

    /// Create tract-cuda's context, which compiles every kernel library missing
    /// from the cache (NVRTC). Returns how long it took.
    pub fn warm() -> std::result::Result<std::time::Duration, String> {
        tract_cuda::utils::ensure_cuda_runtime_dependencies("CUDA")
            .map_err(|e| format!("{e:#}"))?;
        let start = std::time::Instant::now();
        std::panic::catch_unwind(|| {
            let _ = tract_cuda::CudaTransform.transform(&mut TypedModel::default());
        })
        .map_err(|p| {
            p.downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "tract-cuda could not create its context".into())
        })?;
        Ok(start.elapsed())
    }

    /// Turn a typed graph into a plan for the GPU. tract-cuda panics where it
    /// cannot create its context; the panic is caught and becomes an error.
    pub fn prepare(
        typed: TypedModel,
        precision: GpuPrecision,
    ) -> TractResult<Arc<TypedRunnableModel>> {
        let mut model = typed.into_decluttered()?;
        if precision == GpuPrecision::F16 {
            super::f16_compute::translate(&mut model)?;
        }
        unfuse_gelu_exact(&mut model)?;
        tract_cuda::utils::ensure_cuda_runtime_dependencies("CUDA")?;
        let runtime = tract_onnx::tract_core::runtime::runtime_for_name("cuda")?
            .context("tract's cuda runtime is not registered in this build")?;
        let runnable =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.prepare(model)))
                .map_err(|p| {
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
                    anyhow::anyhow!("tract-cuda failed: {}", msg.unwrap_or_else(|| "panic".into()))
                })??;
        runnable.typed_plan().cloned().context("tract-cuda returned a plan owlet cannot run")
    }

    /// tract fuses 0.5·x·(1 + erf(x/√2)) into one GeluExact op, which tract-cuda has
    /// no kernel for (it would run on the CPU with a copy each way, in every layer of
    /// BLIP-2's vision encoder and Q-Former). Spelled out again as Mul, Erf, Add,
    /// Mul, every piece has a CUDA kernel.
    pub fn unfuse_gelu_exact(model: &mut TypedModel) -> TractResult<usize> {
        let gelus: Vec<usize> = model
            .nodes()
            .iter()
            .filter(|n| n.op_as::<ElementWiseOp>().is_some_and(|ew| ew.0.is::<GeluExact>()))
            .map(|n| n.id)
            .collect();
        for &id in &gelus {
            let node = model.node(id).clone();
            let dt = model.outlet_fact(node.inputs[0])?.datum_type;
            let scalar =
                |v: f32| -> TractResult<Tensor> { Ok(tensor0(v).cast_to_dt(dt)?.into_owned()) };
            let mut patch = TypedModelPatch::default();
            let x = patch.tap_model(model, node.inputs[0])?;
            let rank = model.outlet_fact(node.inputs[0])?.rank();
            let c = |patch: &mut TypedModelPatch, name: &str, v: f32| -> TractResult<OutletId> {
                let mut t = scalar(v)?;
                while t.rank() < rank {
                    t.insert_axis(0)?;
                }
                patch.add_const(format!("{}.{name}", node.name), t)
            };
            let inv_sqrt2 = c(&mut patch, "inv_sqrt2", std::f32::consts::FRAC_1_SQRT_2)?;
            let one = c(&mut patch, "one", 1.0)?;
            let half = c(&mut patch, "half", 0.5)?;
            let s =
                patch.wire_node(format!("{}.scale", node.name), math::mul(), &[x, inv_sqrt2])?[0];
            let e = patch.wire_node(format!("{}.erf", node.name), math::erf(), &[s])?[0];
            let p = patch.wire_node(format!("{}.one_plus", node.name), math::add(), &[e, one])?[0];
            let hx = patch.wire_node(format!("{}.half_x", node.name), math::mul(), &[x, half])?[0];
            let out = patch.wire_node(format!("{}.gelu", node.name), math::mul(), &[hx, p])?[0];
            patch.shunt_outside(model, id.into(), out)?;
            patch.apply(model)?;
        }
        if !gelus.is_empty() {
            model.compact()?;
        }
        Ok(gelus.len())
    }

    /// Is this node's op one of tract-cuda's (or bookkeeping)? Everything else in a
    /// prepared GPU plan runs on the CPU, with copies around it.
    pub fn runs_on_gpu(op_name: &str) -> bool {
        ["Cuda", "Gpu", "DeviceSync", "Source", "Const"].iter().any(|p| op_name.starts_with(p))
    }
}
