//! One kernel family: every implementation of one operation that this CPU can run,
//! the reference first and the fastest last, and the one the process runs, chosen
//! once and logged. Every family (softmax, layer norm, the int8 product, the dot
//! products, ...) is a `Family` in a `static`, so choosing, overriding and logging
//! are written once, here, and `reference_test!` declares each family's test
//! against its reference.

use std::collections::BTreeMap;
use std::sync::OnceLock;

/// What a family holds: an implementation with a name (for logs, tests and
/// `owlet bench`, which prints which code made a figure).
pub trait Candidate: Copy + Send + Sync + 'static {
    /// The implementation's name, unique within its family.
    fn name(&self) -> &'static str;
}

/// A kernel that is one function: its name and its code.
#[derive(Clone, Copy)]
pub struct Kernel<F> {
    /// e.g. "x86_64_avx2_softmax_rows".
    pub name: &'static str,
    /// The function.
    pub run: F,
}

impl<F: Copy + Send + Sync + 'static> Candidate for Kernel<F> {
    fn name(&self) -> &'static str {
        self.name
    }
}

impl<F> std::fmt::Debug for Kernel<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Every implementation of one operation, and the one in use.
pub struct Family<K> {
    /// The family's name: the key `Choice::named` uses (owlet-runtime's
    /// `RuntimeOptions::kernel_choice`), and what the logs and `owlet bench` call it
    /// ("softmax", "int8", ...).
    pub id: &'static str,
    candidates: fn() -> Vec<K>,
    chosen: OnceLock<K>,
}

impl<K: Candidate> Family<K> {
    /// A family whose `candidates` lists what this CPU runs, reference first, best
    /// last (it checks the CPU's features itself).
    pub const fn new(id: &'static str, candidates: fn() -> Vec<K>) -> Family<K> {
        Family { id, candidates, chosen: OnceLock::new() }
    }

    /// Every implementation this CPU can run, the reference first, the best last.
    pub fn candidates(&self) -> Vec<K> {
        (self.candidates)()
    }

    /// The reference (scalar, obviously right) implementation.
    pub fn reference(&self) -> K {
        *self.candidates().first().expect("a family always has its reference")
    }

    /// The implementation this process runs, chosen on first use and logged: the one
    /// the installed `Choice` names for this family (a name this CPU does not run is
    /// logged and ignored), else the reference under `Choice::scalar`, else the best.
    pub fn chosen(&self) -> K {
        *self.chosen.get_or_init(|| {
            let k =
                choose(self.id, &self.candidates(), &super::choice().named, super::scalar_forced());
            log::info!("owlet {} kernel: {}", self.id, k.name());
            k
        })
    }
}

/// A family whatever its kernels' type, for the list of all of them.
pub(super) trait AnyFamily {
    fn id(&self) -> &'static str;
    fn chosen_name(&self) -> &'static str;
}

impl<K: Candidate> AnyFamily for Family<K> {
    fn id(&self) -> &'static str {
        self.id
    }
    fn chosen_name(&self) -> &'static str {
        self.chosen().name()
    }
}

/// `Family::chosen`'s rule, apart from the process's options (for its tests).
fn choose<K: Candidate>(
    id: &str,
    all: &[K],
    named: &BTreeMap<String, String>,
    scalar_forced: bool,
) -> K {
    let best = *all.last().expect("a family always has its reference");
    if let Some(name) = named.get(id) {
        if let Some(k) = all.iter().find(|k| k.name() == name) {
            return *k;
        }
        let names: Vec<&str> = all.iter().map(|k| k.name()).collect();
        log::warn!("{id} kernel {name:?}: not one this CPU runs ({names:?}); using the best");
        return best;
    }
    if scalar_forced {
        all[0]
    } else {
        best
    }
}

/// Declares a test that runs every implementation of a family on each case and
/// compares it with the family's reference, element by element:
///
/// ```ignore
/// reference_test! {
///     /// What the test shows.
///     fn every_kernel_matches_the_reference(FAMILY) {
///         cases: [(label, input), ...] (any iterator),
///         run: |kernel, input| -> Vec<T>,
///         agree: |input, got: T, want: T| -> bool,
///     }
/// }
/// ```
///
/// A failure names the kernel, the case's label and the element.
#[cfg(test)]
macro_rules! reference_test {
    (
        $(#[$meta:meta])*
        fn $name:ident($family:expr) {
            cases: $cases:expr,
            run: $run:expr,
            agree: $agree:expr $(,)?
        }
    ) => {
        $(#[$meta])*
        #[test]
        fn $name() {
            let family = &$family;
            let candidates = family.candidates();
            let reference = family.reference();
            let run = $run;
            let agree = $agree;
            let mut cases = 0;
            for (label, input) in $cases {
                cases += 1;
                let want = run(reference, &input);
                for kernel in &candidates {
                    let got = run(*kernel, &input);
                    let name = $crate::Candidate::name(kernel);
                    assert_eq!(got.len(), want.len(), "{name}, {label}: output length");
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            agree(&input, *g, *w),
                            "{name}, {label}, at {i}: {g:?}, reference {w:?}"
                        );
                    }
                }
            }
            assert!(cases > 0, "no cases");
            eprintln!(
                "{}: {} kernels against the reference on {cases} cases",
                family.id,
                candidates.len()
            );
        }
    };
}
#[cfg(test)]
pub(crate) use reference_test;

#[cfg(test)]
mod tests {
    use super::*;

    fn k(name: &'static str) -> Kernel<()> {
        Kernel { name, run: () }
    }

    #[test]
    fn the_best_runs_unless_options_name_another_or_force_the_reference() {
        let all = [k("reference"), k("portable"), k("avx2")];
        let none = BTreeMap::new();
        assert_eq!(choose("f", &all, &none, false).name, "avx2");
        assert_eq!(choose("f", &all, &none, true).name, "reference");
        let named = BTreeMap::from([("f".to_string(), "portable".to_string())]);
        assert_eq!(choose("f", &all, &named, false).name, "portable");
        // A choice wins over the scalar switch: it names one kernel on purpose.
        assert_eq!(choose("f", &all, &named, true).name, "portable");
        // Another family's choice, or a kernel this CPU lacks: the best.
        assert_eq!(choose("g", &all, &named, false).name, "avx2");
        let absent = BTreeMap::from([("f".to_string(), "avx512".to_string())]);
        assert_eq!(choose("f", &all, &absent, false).name, "avx2");
    }

    fn double_reference(x: &[f32]) -> Vec<f32> {
        x.iter().map(|v| v * 2.0).collect()
    }
    fn double_fast(x: &[f32]) -> Vec<f32> {
        x.iter().map(|v| v + v).collect()
    }
    fn double_wrong(x: &[f32]) -> Vec<f32> {
        x.iter().map(|v| v * 2.0 + f32::from(*v > 3.0)).collect()
    }
    type Double = fn(&[f32]) -> Vec<f32>;
    fn good() -> Vec<Kernel<Double>> {
        vec![
            Kernel { name: "reference", run: double_reference as Double },
            Kernel { name: "fast", run: double_fast },
        ]
    }
    fn bad() -> Vec<Kernel<Double>> {
        vec![
            Kernel { name: "reference", run: double_reference as Double },
            Kernel { name: "wrong", run: double_wrong },
        ]
    }
    static GOOD: Family<Kernel<Double>> = Family::new("double", good);
    static BAD: Family<Kernel<Double>> = Family::new("double", bad);

    fn cases() -> Vec<(String, Vec<f32>)> {
        (1..6).map(|n| (format!("len {n}"), (0..n).map(|i| i as f32).collect())).collect()
    }

    reference_test! {
        /// The macro passes kernels that agree with the reference...
        fn the_macro_passes_kernels_that_agree(GOOD) {
            cases: cases(),
            run: |k: Kernel<Double>, x: &Vec<f32>| (k.run)(x),
            agree: |_: &Vec<f32>, g: f32, w: f32| g == w,
        }
    }

    reference_test! {
        /// ...and fails on one that differs somewhere (here from len 5 on).
        #[should_panic(expected = "wrong, len 5, at 4: 9.0, reference 8.0")]
        fn the_macro_fails_a_kernel_that_differs(BAD) {
            cases: cases(),
            run: |k: Kernel<Double>, x: &Vec<f32>| (k.run)(x),
            agree: |_: &Vec<f32>, g: f32, w: f32| g == w,
        }
    }
}
