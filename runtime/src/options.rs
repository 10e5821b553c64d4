//! owlet-runtime's switches as one value: which kernels run, whether owlet's ops
//! replace tract's, how the thread pool waits, whether fp16 computes in f16.
//!
//! They are process-wide by nature (a kernel is chosen once, the pool is shared), so
//! a process installs its options once, before the first model loads; until then,
//! and if nobody installs any, the defaults hold. The library reads no environment:
//! the binaries map the `OWLET_*` variables onto options with
//! [`RuntimeOptions::from_env`], which is how the A/B measurements in BENCHMARKS.md
//! switch them.

use std::collections::BTreeMap;
use std::sync::OnceLock;

/// Which implementation of each kernel family runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernels {
    /// The fastest this CPU runs, chosen once at start-up.
    #[default]
    Best,
    /// Every family's scalar reference (to A/B a kernel or rule one out).
    Scalar,
}

/// Whether the pool's other threads spin between the products of a running plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoolSpin {
    /// Spin while the pool has the cores to itself, sleep while another process
    /// shares them: each spinning plan measures how much of its time the pool's
    /// threads actually ran, and below 90% the threads sleep until a retry (every
    /// two seconds) finds the cores free again. Spinning on a shared core takes
    /// time from the other process and waits on a thread the OS has paused.
    #[default]
    WhileCoresFree,
    /// Always spin: the fastest on a machine of its own. `OWLET_POOL_SPIN=always`.
    Always,
    /// Never spin: the threads sleep between products. `OWLET_POOL_SPIN=off`.
    Off,
}

/// The runtime's switches; [`Default`] is what owlet ships with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// Swap owlet's ops in for tract's (layer norm, attention's products, softmax,
    /// the mask broadcast). Off leaves the plans to tract, except the int8 product,
    /// which tract has no fast equivalent of. `OWLET_REWRITES=off`.
    pub rewrites: bool,
    /// Join int8 products that share an input (a layer's Q, K and V) into one.
    /// `OWLET_INT8_FUSE=off`.
    pub int8_fuse: bool,
    /// When the pool's threads spin between the products of a running plan instead
    /// of sleeping. `OWLET_POOL_SPIN=always|off`.
    pub pool_spin: PoolSpin,
    /// `OWLET_KERNELS=scalar` for [`Kernels::Scalar`].
    pub kernels: Kernels,
    /// One kernel by name for a family instead of the best, keyed by the family's
    /// id (`"int8"`, `"softmax"`, ...: the module's name in `kernels`), to measure
    /// another kernel on the same machine; a name the CPU does not run is logged and
    /// the best used. `OWLET_KERNEL=FAMILY=NAME[,FAMILY=NAME...]`, and
    /// `OWLET_INT8_KERNEL=NAME` for the int8 family.
    pub kernel_choice: BTreeMap<String, String>,
    /// Compute fp16 bundles in f16 where the CPU has f16 arithmetic (aarch64 with
    /// fp16); off keeps f32 compute. `OWLET_CPU_F16=0`.
    pub cpu_f16: bool,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            rewrites: true,
            int8_fuse: true,
            pool_spin: PoolSpin::WhileCoresFree,
            kernels: Kernels::Best,
            kernel_choice: BTreeMap::new(),
            cpu_f16: true,
        }
    }
}

static INSTALLED: OnceLock<RuntimeOptions> = OnceLock::new();

impl RuntimeOptions {
    /// The defaults with the `OWLET_*` environment variables applied (for binaries).
    pub fn from_env() -> RuntimeOptions {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> RuntimeOptions {
        let is = |name: &str, value: &str| var(name).as_deref() == Some(value);
        RuntimeOptions {
            rewrites: !is("OWLET_REWRITES", "off"),
            int8_fuse: !is("OWLET_INT8_FUSE", "off"),
            pool_spin: match var("OWLET_POOL_SPIN").as_deref() {
                Some("off") => PoolSpin::Off,
                Some("always") => PoolSpin::Always,
                _ => PoolSpin::WhileCoresFree,
            },
            kernels: if is("OWLET_KERNELS", "scalar") { Kernels::Scalar } else { Kernels::Best },
            kernel_choice: kernel_choice(var("OWLET_KERNEL"), var("OWLET_INT8_KERNEL")),
            cpu_f16: !is("OWLET_CPU_F16", "0"),
        }
    }

    /// Makes these the process's options. Call it before the first model loads:
    /// once the runtime has used its options (or another call installed others),
    /// they stay, and the ones in force come back as the error.
    pub fn install(self) -> Result<(), &'static RuntimeOptions> {
        for family in self.kernel_choice.keys() {
            if !crate::kernels::family_ids().any(|id| id == family) {
                let ids: Vec<_> = crate::kernels::family_ids().collect();
                log::warn!("kernel choice for {family:?}: no such kernel family ({ids:?})");
            }
        }
        // The kernels (their own crate) keep their part of the options. Both are set
        // inside the one initializer (as in current()), so they never disagree; if a
        // kernel has already run, the defaults were in force for it, and stay.
        let installed =
            INSTALLED.get_or_init(|| match owlet_kernels::install(self.kernel_part()) {
                Ok(()) => self.clone(),
                Err(_) => RuntimeOptions::default(),
            });
        if *installed == self {
            Ok(())
        } else {
            Err(installed)
        }
    }

    /// What the kernels read: the references forced, or one kernel named per family.
    fn kernel_part(&self) -> owlet_kernels::Choice {
        owlet_kernels::Choice {
            scalar: self.kernels == Kernels::Scalar,
            named: self.kernel_choice.clone(),
        }
    }
}

/// `OWLET_KERNEL`'s `family=name` pairs, then `OWLET_INT8_KERNEL`'s name for int8.
/// A pair without `=` is logged and left out.
fn kernel_choice(pairs: Option<String>, int8: Option<String>) -> BTreeMap<String, String> {
    let mut choice = BTreeMap::new();
    for pair in pairs.iter().flat_map(|p| p.split(',')).filter(|p| !p.trim().is_empty()) {
        match pair.split_once('=') {
            Some((family, name)) => {
                choice.insert(family.trim().to_string(), name.trim().to_string());
            }
            None => log::warn!("OWLET_KERNEL: {pair:?} is not FAMILY=NAME; left out"),
        }
    }
    if let Some(name) = int8.filter(|n| !n.is_empty()) {
        choice.insert("int8".to_string(), name);
    }
    choice
}

/// The options in force (the defaults if none were installed before this call:
/// then the kernels' part is pinned to the defaults too, so that the two never
/// disagree).
pub(crate) fn current() -> &'static RuntimeOptions {
    INSTALLED.get_or_init(|| {
        let defaults = RuntimeOptions::default();
        // Err only if a kernel ran first, with the kernels' defaults: the same ones.
        let _ = owlet_kernels::install(defaults.kernel_part());
        defaults
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_names_map_onto_options() {
        let vars = [
            ("OWLET_REWRITES", "off"),
            ("OWLET_INT8_FUSE", "off"),
            ("OWLET_POOL_SPIN", "off"),
            ("OWLET_KERNELS", "scalar"),
            ("OWLET_INT8_KERNEL", "scalar_qgemm_i8"),
            ("OWLET_KERNEL", "softmax=reference_softmax_rows, no-equals-sign,dot_f32=x"),
            ("OWLET_CPU_F16", "0"),
        ];
        let get = |name: &str| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string());
        let o = RuntimeOptions::from_vars(get);
        assert_eq!(
            o,
            RuntimeOptions {
                rewrites: false,
                int8_fuse: false,
                pool_spin: PoolSpin::Off,
                kernels: Kernels::Scalar,
                kernel_choice: BTreeMap::from([
                    ("int8".into(), "scalar_qgemm_i8".into()),
                    ("softmax".into(), "reference_softmax_rows".into()),
                    ("dot_f32".into(), "x".into()),
                ]),
                cpu_f16: false,
            }
        );
        // Unset, empty or other values leave the defaults.
        assert_eq!(RuntimeOptions::from_vars(|_| None), RuntimeOptions::default());
        let odd = RuntimeOptions::from_vars(|_| Some(String::new()));
        assert_eq!(odd, RuntimeOptions::default());
        let always = |name: &str| (name == "OWLET_POOL_SPIN").then(|| "always".to_string());
        assert_eq!(RuntimeOptions::from_vars(always).pool_spin, PoolSpin::Always);
    }
}
