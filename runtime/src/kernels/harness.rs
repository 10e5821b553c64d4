//! The dot-product kernels against their references: random lengths 0..4*lanes
//! and beyond, at misaligned offsets, with a tolerance relative to the magnitude
//! of the terms (f32 accumulation in another order than the reference's): the f32
//! table, and search's f32-by-int8 (`dot_i8`) and f32-by-f16 (`dot_f16`) rows.

use proptest::prelude::*;

use super::{best, dot_f16, dot_f32_candidates, dot_i8, scalar};

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

fn random(seed: u64) -> impl FnMut() -> f32 {
    let mut s = seed | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 23) as f32 * 4.0 - 2.0
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn dot_f32_i8_matches_its_reference(len in 0usize..1100, offset in 0usize..16, seed in any::<u64>()) {
        let mut rnd = random(seed);
        let a: Vec<f32> = (0..len + offset).map(|_| rnd() * 0.1).collect();
        // Every code, -128 (never stored: codes are -127..=127) included.
        let b: Vec<i8> = (0..len + offset).map(|_| (rnd() * 64.0) as i32 as i8).collect();
        let (a, b) = (&a[offset..], &b[offset..]);
        let want = dot_i8::reference(a, b);
        let scale: f32 = a.iter().zip(b).map(|(x, &y)| (x * y as f32).abs()).sum();
        for (name, kernel) in dot_i8::candidates() {
            let got = kernel(a, b);
            prop_assert!(close(got, want, scale), "{name}: len {len} offset {offset}: {got} vs {want}");
        }
    }

    #[test]
    fn dot_f32_f16_matches_its_reference(len in 0usize..1100, offset in 0usize..16, seed in any::<u64>()) {
        let mut rnd = random(seed);
        let a: Vec<f32> = (0..len + offset).map(|_| rnd() * 0.1).collect();
        let mut b: Vec<half::f16> = (0..len + offset).map(|_| half::f16::from_f32(rnd() * 0.1)).collect();
        if len > 3 {
            // A subnormal, the largest finite, a negative zero.
            b[offset] = half::f16::from_bits(0x0001);
            b[offset + 1] = half::f16::MAX;
            b[offset + 2] = half::f16::NEG_ZERO;
        }
        let (a, b) = (&a[offset..], &b[offset..]);
        let want = dot_f16::reference(a, b);
        let scale: f32 = a.iter().zip(b).map(|(x, y)| (x * y.to_f32()).abs()).sum();
        for (name, kernel) in dot_f16::candidates() {
            let got = kernel(a, b);
            prop_assert!(close(got, want, scale), "{name}: len {len} offset {offset}: {got} vs {want}");
        }
    }
}

#[test]
fn search_picks_simd_for_int8_and_f16_rows_where_the_cpu_has_it() {
    let (i8_name, f16_name) = (dot_i8::best().0, dot_f16::best().0);
    eprintln!("search kernels: {i8_name}, {f16_name}");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        assert!(i8_name.starts_with("x86_64_avx"), "{i8_name}");
        if std::arch::is_x86_feature_detected!("f16c") {
            assert!(f16_name.starts_with("x86_64_avx"), "{f16_name}");
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    assert!(i8_name.starts_with("portable") && f16_name.starts_with("portable"));
}

#[test]
fn the_best_table_uses_simd_where_the_cpu_has_it() {
    let name = best().dot_f32_name;
    let all: Vec<&str> = dot_f32_candidates().iter().map(|c| c.0).collect();
    eprintln!("dot_f32 kernel: {name} (candidates on this CPU: {all:?})");
    #[cfg(target_arch = "aarch64")]
    assert_eq!(name, "aarch64_neon_dot_f32_32n");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        assert_ne!(name, "scalar_dot_f32");
    }
}
