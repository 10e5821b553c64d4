//! Every kernel of the best table against the scalar reference: random lengths
//! 0..4*lanes and beyond, at misaligned offsets, with a tolerance relative to the
//! magnitude of the terms (f32 accumulation vs the f64 reference).

use proptest::prelude::*;

use super::{best, dot_f32_candidates, scalar};

fn close(got: f32, want: f32, scale: f32) -> bool {
    (got - want).abs() <= 1e-5 * scale.max(1e-3) + 1e-6
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn dot_f32_matches_the_scalar_reference(
        len in 0usize..300,
        offset in 0usize..16,
        seed in any::<u64>(),
    ) {
        let mut s = seed | 1;
        let mut rnd = || { s ^= s << 13; s ^= s >> 7; s ^= s << 17; (s >> 40) as f32 / (1u64 << 23) as f32 * 4.0 - 2.0 };
        let a: Vec<f32> = (0..len + offset).map(|_| rnd()).collect();
        let b: Vec<f32> = (0..len + offset).map(|_| rnd()).collect();
        let (a, b) = (&a[offset..], &b[offset..]);
        let want = (scalar().dot_f32)(a, b);
        let scale: f32 = a.iter().zip(b).map(|(x, y)| (x * y).abs()).sum();
        for (name, kernel) in dot_f32_candidates() {
            let got = kernel(a, b);
            prop_assert!(close(got, want, scale), "{name}: len {len} offset {offset}: {got} vs {want}");
        }
    }
}

#[test]
fn the_best_table_uses_simd_where_the_cpu_has_it() {
    let name = best().dot_f32_name;
    let all: Vec<&str> = dot_f32_candidates().iter().map(|c| c.0).collect();
    eprintln!("dot_f32 kernel: {name} (candidates on this CPU: {all:?})");
    #[cfg(target_arch = "aarch64")]
    assert_eq!(name, "aarch64_neon_dot_f32_16n");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        assert_ne!(name, "scalar_dot_f32");
    }
}
