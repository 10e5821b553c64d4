//! tract, planned once: load an ONNX graph, check its interface, optimise it, and
//! keep the runnable plan. Every call after loading binds the symbolic batch size
//! from the input shapes without re-planning. A graph is planned for the CPU or,
//! with the `cuda` feature, for the GPU (crate::device).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;
use tract_onnx::tract_hir::internal::DimLike;

use crate::device::{Device, Placement};
use crate::error::{Error, Result};

/// What a graph's input must look like for its role in the bundle.
#[derive(Debug, Clone, Copy)]
pub struct InputSpec<'a> {
    pub name: &'a str,
    pub dtype: DatumType,
    pub rank: usize,
}

/// An optimised, runnable graph.
pub struct Graph {
    path: PathBuf,
    role: &'static str,
    plan: Arc<TypedRunnableModel>,
    device: Device,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Graph({}, {})", self.role, self.path.display())
    }
}

/// Symbolic axes that are never empty: the batch, and the sequence lengths of the
/// BLIP-2 decoder step (`seq` new tokens, `total` with the cache). The cache
/// length `past` is 0 on the first step and gets no such promise.
pub const NON_EMPTY_AXES: &[&str] = &["batch", "seq", "total"];

/// Tell tract that the graph's non-empty axes are at least 1. Without it tract
/// cannot prove `batch * 50 * 3072 >= 32` and keeps every element-wise Add and Mul
/// that no matmul absorbed on its generic, broadcasting path (measured: 20% of
/// the int8 ViT-B/32's time), instead of its SIMD unicast and by-scalar kernels.
fn assert_axis_sizes(symbols: &SymbolScope) -> TractResult<()> {
    for sym in symbols.all_symbols() {
        let name = format!("{sym}");
        if NON_EMPTY_AXES.contains(&name.as_str()) {
            symbols.add_assertion(format!("{name}>=1"))?;
        }
    }
    Ok(())
}

impl Graph {
    /// Load `path`, check that its inputs are `inputs` (in order) and that it has
    /// one output of rank `output_rank`, then optimise and plan it.
    pub fn load(
        path: &Path,
        role: &'static str,
        inputs: &[InputSpec<'_>],
        output_rank: usize,
        on: Placement,
    ) -> Result<Graph> {
        Graph::load_with_outputs(path, role, inputs, 1, output_rank, on)
    }

    /// As `load`, for a graph with `outputs` outputs, the first of rank `output_rank`.
    pub fn load_with_outputs(
        path: &Path,
        role: &'static str,
        inputs: &[InputSpec<'_>],
        outputs: usize,
        output_rank: usize,
        on: Placement,
    ) -> Result<Graph> {
        let err = |reason: String| Error::Graph { path: path.to_path_buf(), reason };
        let _allocations = crate::memory::LoadingAllocations::begin();
        // Intermediate value_info from exporters pins shapes that clash with the
        // symbolic batch ("Impossible to unify Sym(batch) with Val(1)").
        let onnx = crate::ops::onnx(on).with_ignore_value_info(true);
        let mut model = crate::graph_file::read_inference_model(&onnx, path)
            .map_err(|e| err(format!("not a loadable ONNX graph: {e:#}")))?;
        crate::memory::log_stage(role, "parsed");
        assert_axis_sizes(&model.symbols).map_err(|e| err(format!("{e:#}")))?;

        check_interface(&model, role, inputs, outputs).map_err(err)?;

        crate::ops::qmatmul::pack_before_typing(&mut model)
            .map_err(|e| err(format!("could not pack the int8 weights: {e:#}")))?;
        crate::memory::log_stage(role, "int8 packed");
        let typed = model
            .into_typed()
            .map_err(|e| err(format!("tract could not type the graph: {e:#}")))?;
        crate::memory::log_stage(role, "typed");
        let out_fact = typed.output_fact(0).map_err(|e| err(format!("{e:#}")))?;
        if out_fact.rank() != output_rank {
            return Err(err(format!(
                "{role} output must have rank {output_rank}, found {:?}",
                out_fact.shape
            )));
        }
        let plan = match on.device {
            Device::Cpu => plan_for_cpu(typed, role, on.precision).map_err(err)?,
            #[cfg(feature = "cuda")]
            Device::Cuda => crate::device::cuda::prepare(typed, on.precision)
                .map_err(|e| err(format!("tract-cuda could not prepare the graph: {e:#}")))?,
            #[cfg(not(feature = "cuda"))]
            Device::Cuda => return Err(Error::Device("this owlet was built without CUDA".into())),
        };
        crate::memory::log_stage(role, "planned");
        let graph = Graph { path: path.to_path_buf(), role, plan, device: on.device };
        if log::log_enabled!(log::Level::Info) {
            match on.device {
                Device::Cpu => log::info!(
                    "{role} graph {}: matmul kernels {:?}",
                    path.display(),
                    graph.matmul_kernels()
                ),
                Device::Cuda => log::info!(
                    "{role} graph {}: on cuda ({:?}), nodes on the CPU: {:?}",
                    path.display(),
                    on.precision,
                    graph.cpu_nodes()
                ),
            }
        }
        Ok(graph)
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// For a GPU plan, the kinds of node that still run on the CPU (with a copy
    /// each way), and how many of each; empty when every node is on the GPU. For a
    /// CPU plan, empty.
    pub fn cpu_nodes(&self) -> Vec<(String, usize)> {
        #[cfg_attr(not(feature = "cuda"), allow(unused_mut))]
        let mut kinds = std::collections::BTreeMap::<String, usize>::new();
        #[cfg(feature = "cuda")]
        if self.device == Device::Cuda {
            for node in &self.plan.model().nodes {
                let name = node.op.name();
                if !crate::device::cuda::runs_on_gpu(&name) {
                    *kinds.entry(name.to_string()).or_default() += 1;
                }
            }
        }
        kinds.into_iter().collect()
    }

    #[cfg(any(test, feature = "internals"))]
    pub fn role(&self) -> &'static str {
        self.role
    }

    #[cfg(any(test, feature = "internals"))]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The matrix-multiplication kernels tract chose for this graph on this CPU
    /// (distinct names, e.g. `arm64simd_mmm_f32_16x4`), read from the optimised plan.
    /// Logged at load; tests assert that no silent fall-back to generic code happened.
    pub fn matmul_kernels(&self) -> Vec<String> {
        let mut names = std::collections::BTreeSet::new();
        for node in &self.plan.model().nodes {
            if !node.op.name().contains("MatMul") && !node.op.name().contains("Mmm") {
                continue;
            }
            let text = format!("{:?} {}", node.op, node.op.info().unwrap_or_default().join(" "));
            for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.contains('_') && (word.contains("mmm") || word.contains("mmv")) {
                    names.insert(word.to_string());
                }
            }
        }
        names.into_iter().collect()
    }

    /// How many nodes of each op the plan runs, by op name (tract's `Add`/`Mul` on
    /// their generic path, `OptAddUnicast`, `OwletBroadcastBinary`, ...). For tests
    /// that pin which paths a graph takes.
    #[cfg(any(test, feature = "internals"))]
    pub fn op_counts(&self) -> std::collections::BTreeMap<String, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for node in &self.plan.model().nodes {
            *counts.entry(node.op.name().to_string()).or_default() += 1;
        }
        counts
    }

    /// Size of the output's last axis, when the graph fixes it.
    pub fn output_width(&self) -> Option<usize> {
        let fact = self.plan.model().output_fact(0).ok()?;
        fact.shape.last()?.to_usize().ok()
    }

    pub fn run(&self, graph: &'static str, inputs: TVec<TValue>) -> Result<Tensor> {
        Ok(self.run_all(graph, inputs)?.remove(0))
    }

    /// As `run`, for a graph whose inputs and output all have the batch on axis 0
    /// and whose rows are independent (CLIP's encoders): on a CPU plan with a
    /// thread pool, a batch of several is cut into one part per thread, and the
    /// parts run side by side, each on one thread. tract threads only its larger
    /// matmuls, and runs layer norms, softmax and attention's many small matmuls on
    /// one thread; whole parts of a batch keep every thread busy with all of them
    /// (BENCHMARKS.md). A batch of one, a GPU plan or a single thread: `run`.
    pub fn run_batch_split(&self, graph: &'static str, inputs: TVec<TValue>) -> Result<Tensor> {
        use tract_linalg::multithread::{
            current_tract_executor, multithread_tract_scope, Executor,
        };
        let batch = inputs.first().and_then(|t| t.shape().first().copied()).unwrap_or(0);
        let pool = match current_tract_executor() {
            Executor::MultiThread(pool) if self.device == Device::Cpu && batch > 1 => pool,
            _ => return self.run(graph, inputs),
        };
        if inputs.iter().any(|t| t.shape().first() != Some(&batch)) {
            return self.run(graph, inputs);
        }
        let parts = pool.current_num_threads().min(batch);
        let fail = |e: TractError| Error::Inference { graph, reason: format!("{e:#}") };
        let mut chunks = Vec::with_capacity(parts);
        for p in 0..parts {
            let (start, end) = (batch * p / parts, batch * (p + 1) / parts);
            let part: TVec<TValue> = inputs
                .iter()
                .map(|t| t.slice(0, start, end).map(|t| t.into_tvalue()))
                .collect::<TractResult<_>>()
                .map_err(fail)?;
            chunks.push(part);
        }
        let mut outs: Vec<Option<Result<Tensor>>> = (0..parts).map(|_| None).collect();
        // The parts go to the pool as jobs: wait for the pool's turn as on_pool
        // does (a pool thread is already inside a turn).
        let _turn = pool
            .current_thread_index()
            .is_none()
            .then(|| POOL_TURN.lock().unwrap_or_else(|p| p.into_inner()));
        pool.in_place_scope(|s| {
            for (part, out) in chunks.into_iter().zip(outs.iter_mut()) {
                // Each part on one thread: no nested use of the pool.
                s.spawn(move |_| {
                    *out = Some(multithread_tract_scope(Executor::SingleThread, || {
                        self.run(graph, part)
                    }))
                });
            }
        });
        let outs: Vec<Tensor> =
            outs.into_iter().map(|o| o.expect("every part ran")).collect::<Result<_>>()?;
        Tensor::stack_tensors(0, &outs).map_err(fail)
    }

    /// Run and return every output. Float inputs are cast to the plan's float type
    /// and float outputs come back as f32, so an fp16 GPU plan (crate::device) is
    /// used exactly like an fp32 one.
    pub fn run_all(&self, graph: &'static str, inputs: TVec<TValue>) -> Result<Vec<Tensor>> {
        let fail = |e: TractError| Error::Inference { graph, reason: format!("{e:#}") };
        self.run_all_in_plan_types(graph, inputs)?
            .into_iter()
            .map(|t| to_f32(t).map_err(fail))
            .collect()
    }

    /// As `run_all`, with outputs in the plan's own float type: for state that is fed
    /// back (BLIP-2's KV cache), which would otherwise be cast both ways every step.
    pub fn run_all_in_plan_types(
        &self,
        graph: &'static str,
        inputs: TVec<TValue>,
    ) -> Result<Vec<Tensor>> {
        let fail = |e: TractError| Error::Inference { graph, reason: format!("{e:#}") };
        let model = self.plan.model();
        let mut inputs = inputs;
        for (ix, value) in inputs.iter_mut().enumerate() {
            let want = model.input_fact(ix).map_err(fail)?.datum_type;
            if want != value.datum_type() && want.is_float() && value.datum_type().is_float() {
                *value = value.cast_to_dt(want).map_err(fail)?.into_owned().into_tvalue();
            }
        }
        let out = if self.device == Device::Cpu {
            on_pool(|| self.run_plan(inputs))
        } else {
            self.run_plan(inputs)
        };
        let out = out.map_err(fail)?;
        Ok(out.into_iter().map(|v| v.into_tensor()).collect())
    }

    /// The plan run, timed node by node while `profile::enable` is on.
    fn run_plan(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        if !profile::enabled() {
            return self.plan.run(inputs);
        }
        let mut state = self.plan.spawn()?;
        state.run_plan_with_eval(inputs, |ctx, op_state, node, input| {
            let start = std::time::Instant::now();
            let out = tract_onnx::tract_core::plan::eval(ctx, op_state, node, input);
            profile::record(self.role, node.op.name().as_ref(), start.elapsed());
            out
        })
    }
}

/// The parsed graph has the inputs `inputs` (names, types, ranks, in order) and
/// `outputs` outputs; the error says which differs.
fn check_interface(
    model: &InferenceModel,
    role: &str,
    inputs: &[InputSpec<'_>],
    outputs: usize,
) -> std::result::Result<(), String> {
    let found = model.input_outlets().map_err(|e| format!("{e:#}"))?.len();
    if found != inputs.len() {
        return Err(format!(
            "{role} graph must have {} input(s) ({}), found {found}",
            inputs.len(),
            inputs.iter().map(|i| i.name).collect::<Vec<_>>().join(", ")
        ));
    }
    for (ix, spec) in inputs.iter().enumerate() {
        let node = &model.nodes[model.inputs[ix].node];
        if node.name != spec.name {
            return Err(format!(
                "{role} input #{ix} must be `{}`, found `{}`",
                spec.name, node.name
            ));
        }
        let fact = &node.outputs[0].fact;
        if let Some(dt) = fact.datum_type.concretize() {
            if dt != spec.dtype {
                return Err(format!(
                    "{role} input `{}` must be {:?}, found {dt:?}",
                    spec.name, spec.dtype
                ));
            }
        }
        if let Some(rank) = fact.shape.rank().concretize() {
            if rank as usize != spec.rank {
                return Err(format!(
                    "{role} input `{}` must have rank {}, found {rank}",
                    spec.name, spec.rank
                ));
            }
        }
    }
    if model.outputs.len() != outputs {
        return Err(format!(
            "{role} graph must have {outputs} output(s), found {}",
            model.outputs.len()
        ));
    }
    Ok(())
}

/// The typed graph planned for the CPU: decluttered, fp16 weights widened (or the
/// graph computed in f16), owlet's rewrites applied before and after tract's
/// optimisation.
fn plan_for_cpu(
    typed: TypedModel,
    role: &str,
    precision: crate::device::GpuPrecision,
) -> std::result::Result<Arc<TypedRunnableModel>, String> {
    let typed = if precision == crate::device::GpuPrecision::F16 {
        let mut m = typed
            .into_decluttered()
            .map_err(|e| format!("tract could not declutter the graph: {e:#}"))?;
        crate::device::f16_compute::translate(&mut m)
            .map_err(|e| format!("tract could not turn the graph into f16: {e:#}"))?;
        m
    } else {
        let mut typed = typed;
        crate::device::f16_compute::widen_f16_constants(&mut typed)
            .map_err(|e| format!("tract could not widen the fp16 weights: {e:#}"))?;
        // owlet's einsum rewrite needs the decluttered form (after optimisation the
        // einsums are packing and matmul ops).
        let mut m = typed
            .into_decluttered()
            .map_err(|e| format!("tract could not declutter the graph: {e:#}"))?;
        crate::ops::rewrite_decluttered(&mut m)
            .map_err(|e| format!("owlet's rewrite failed: {e:#}"))?;
        m
    };
    crate::memory::log_stage(role, "decluttered");
    typed
        .into_optimized()
        .and_then(|mut m| {
            crate::ops::rewrite_plan(&mut m)?;
            m.into_runnable()
        })
        .map_err(|e| format!("tract could not optimise the graph: {e:#}"))
}

/// f16 results (an fp16 GPU plan) as f32, the type every caller works in.
pub fn to_f32(t: Tensor) -> TractResult<Tensor> {
    if t.datum_type() == DatumType::F16 {
        Ok(t.cast_to::<f32>()?.into_owned())
    } else {
        Ok(t)
    }
}

/// Use `n` threads for tract's matrix products (and element-wise ops) from now on.
/// Nodes still run one after another; the pool splits the work inside each.
pub fn set_threads(n: usize) {
    use tract_linalg::multithread::{set_default_executor, Executor};
    let n = n.max(1);
    set_default_executor(if n == 1 { Executor::SingleThread } else { Executor::multithread(n) });
}

/// Run `f` on one of the thread pool's threads (with the pool as tract's executor
/// there), or here when there is no pool or this is one of its threads.
///
/// A thread outside the pool that hands work to it sleeps until the pool is done
/// and wakes by a futex: twice per int8 product. A pool thread works on its own
/// tasks while it waits. Measured, int8 ViT-B/32 at batch 1, 2 threads, whole
/// plans run here: text 13.2 -> 10.6 ms, vision 16.0 -> 13.0 ms.
///
/// While `f` runs, the pool's other threads are kept awake (`keep_awake`) when
/// `RuntimeOptions::pool_spin` says so (by default: while the pool has the cores to
/// itself; `crate::pool_spin`): between two products a plan runs small
/// single-threaded ops, long enough for an idle rayon worker to fall asleep, and
/// waking it again took 12-23 µs per product (an int8 text-encoder product of 39 µs
/// measured 51-62 µs with a 50-1000 µs pause before each). onnxruntime's pool spins
/// the same way.
///
/// One caller's plan runs on the pool at a time ([`POOL_TURN`]).
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    use tract_linalg::multithread::{current_tract_executor, multithread_tract_scope, Executor};
    let exec = current_tract_executor();
    match &exec {
        Executor::MultiThread(pool) if pool.current_thread_index().is_none() => {
            let _turn = POOL_TURN.lock().unwrap_or_else(|p| p.into_inner());
            let helpers = pool.current_num_threads() - 1;
            if helpers == 0 || !crate::pool_spin::spin_now() {
                return pool.install(|| multithread_tract_scope(exec.clone(), f));
            }
            let done = std::sync::atomic::AtomicBool::new(false);
            let started = std::sync::atomic::AtomicUsize::new(0);
            // CPU time the helpers got, in ns: with the plan's own thread's, what the
            // pool ran of the time it was there for (crate::pool_spin).
            let helpers_cpu = std::sync::atomic::AtomicU64::new(0);
            let t0 = std::time::Instant::now();
            let mut own_cpu = None;
            let r = pool.scope(|s| {
                let owner = rayon::current_thread_index();
                let (started, done, helpers_cpu) = (&started, &done, &helpers_cpu);
                for _ in 0..helpers {
                    s.spawn(move |_| keep_awake(owner, started, done, helpers_cpu));
                }
                let own_start = crate::pool_spin::thread_cpu();
                // Wait (without taking jobs, so the helpers land on the other
                // threads) until they run: one wake-up per plan instead of one per
                // product. Bounded, since this runs once per plan call (per token
                // in a decoder): a worker wakes in 10-50 µs; one that takes longer
                // (a CPU busy elsewhere) is not waited for past HELPER_WAIT_US.
                let t0 = std::time::Instant::now();
                while started.load(std::sync::atomic::Ordering::Acquire) < helpers
                    && t0.elapsed().as_micros() < HELPER_WAIT_US
                {
                    std::hint::spin_loop();
                }
                let r = multithread_tract_scope(exec.clone(), f);
                done.store(true, std::sync::atomic::Ordering::Release);
                own_cpu = own_start.zip(crate::pool_spin::thread_cpu()).map(|(a, b)| b - a);
                r
            });
            // The scope has waited for every helper: their CPU time is all counted.
            if let Some(own) = own_cpu {
                let helpers_cpu = helpers_cpu.load(std::sync::atomic::Ordering::Acquire);
                crate::pool_spin::observe(crate::pool_spin::PlanShare {
                    cpu: own + std::time::Duration::from_nanos(helpers_cpu),
                    wall: t0.elapsed(),
                    threads: helpers as u32 + 1,
                });
            }
            r
        }
        _ => f(),
    }
}

/// Held by a thread outside the pool while its plan runs there. tract keeps a
/// thread's scratch space borrowed while one of its products waits for the pool,
/// and a pool thread that waits takes other jobs: had another caller's plan been
/// handed to the pool meanwhile, it could run inside that wait, borrow the same
/// scratch and panic ("RefCell already borrowed", two cameras of the bridge;
/// tests/concurrent_plans.rs). The callers take turns instead: the pool's threads
/// are all busy with one plan anyway.
static POOL_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// How long `on_pool` waits for its helpers to start before running the plan.
const HELPER_WAIT_US: u128 = 250;

/// A pool thread that runs the pool's jobs as they come, spinning in between,
/// until `done`. On the thread that runs the plan itself (`owner`: a helper that
/// was not picked up in time and is popped there) it returns at once, since that
/// thread sets `done` only after the plan, which would wait behind it.
///
/// It adds the CPU time it got to `cpu_ns` (a helper that starts late, or never
/// before the plan ends, got less of the plan's time: the cores were busy).
fn keep_awake(
    owner: Option<usize>,
    started: &std::sync::atomic::AtomicUsize,
    done: &std::sync::atomic::AtomicBool,
    cpu_ns: &std::sync::atomic::AtomicU64,
) {
    use std::sync::atomic::Ordering;
    if rayon::current_thread_index() == owner {
        return;
    }
    let cpu_start = crate::pool_spin::thread_cpu();
    started.fetch_add(1, Ordering::AcqRel);
    while !done.load(Ordering::Acquire) {
        if !matches!(rayon::yield_now(), Some(rayon::Yield::Executed)) {
            std::hint::spin_loop();
        }
    }
    if let Some((a, b)) = cpu_start.zip(crate::pool_spin::thread_cpu()) {
        cpu_ns.fetch_add((b - a).as_nanos() as u64, Ordering::AcqRel);
    }
}

/// The default thread count: every core the process may use.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Time spent in each kind of op, per graph role, summed over runs: what
/// `owlet bench --profile` prints. Off unless enabled; then every node's eval is
/// timed (two clock reads a node).
pub mod profile {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    /// (graph role, op name) -> (time, evaluations).
    pub type OpTimes = BTreeMap<(&'static str, String), (Duration, u64)>;

    static ON: AtomicBool = AtomicBool::new(false);
    static TIMES: Mutex<OpTimes> = Mutex::new(BTreeMap::new());

    pub fn enable(on: bool) {
        ON.store(on, Ordering::Relaxed);
    }

    pub fn enabled() -> bool {
        ON.load(Ordering::Relaxed)
    }

    pub(crate) fn record(role: &'static str, op: &str, took: Duration) {
        let mut times = TIMES.lock().unwrap_or_else(|e| e.into_inner());
        let entry = times.entry((role, op.to_string())).or_default();
        entry.0 += took;
        entry.1 += 1;
    }

    /// Everything recorded since the last call, and start afresh.
    pub fn take() -> OpTimes {
        std::mem::take(&mut *TIMES.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use tract_linalg::multithread::{multithread_tract_scope, Executor};

    /// on_pool with helpers spinning: work the plan hands to the pool (as int8
    /// products and row-parallel ops do) still completes and gives the same result,
    /// run after run, with one helper or several, and the helpers end with it.
    #[test]
    fn on_pool_runs_pool_work_to_completion_with_spinning_helpers() {
        for threads in [2, 3] {
            let exec = Executor::multithread(threads);
            multithread_tract_scope(exec, || {
                for run in 0..200usize {
                    let mut v: Vec<u64> = (0..4096).collect();
                    let got = super::on_pool(|| {
                        assert!(rayon::current_thread_index().is_some(), "f runs on a pool thread");
                        tract_linalg::multithread::par_chunks_mut(
                            &mut v,
                            64,
                            1 << 30,
                            |_, rows| {
                                rows.iter_mut().for_each(|x| *x = *x * 2 + run as u64);
                                Ok(())
                            },
                        )
                        .unwrap();
                        v.iter().sum::<u64>()
                    });
                    let want: u64 = (0..4096u64).map(|x| x * 2 + run as u64).sum();
                    assert_eq!(got, want, "{threads} threads, run {run}");
                }
            });
        }
    }
}
