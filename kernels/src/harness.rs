//! The dot-product kernels against their references: lengths 0..4*lanes and beyond,
//! at misaligned offsets, with a tolerance relative to the magnitude of the terms
//! (f32 accumulation in another order than the reference's): f32 by f32
//! (similarity), and search's f32-by-int8 (`dot_i8`) and f32-by-f16 (`dot_f16`) rows.

use half::f16;

use super::{dot_f16, dot_f32, dot_i8, reference_test, Kernel};

fn random(seed: u64) -> impl FnMut() -> f32 {
    let mut s = seed | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 23) as f32 * 4.0 - 2.0
    }
}

/// Lengths around every kernel's blocks (8 to 64 lanes) and past the longest
/// embeddings' 1024, each at offsets that misalign the loads.
fn shapes() -> impl Iterator<Item = (usize, usize)> {
    let lengths = (0..70).chain([127, 128, 129, 255, 256, 257, 511, 512, 513, 768, 1023, 1100]);
    lengths.flat_map(|len| [0, 1, 3, 7, 15].map(|offset| (len, offset)))
}

/// Two vectors, each `offset` values into its buffer.
struct Pair<B> {
    a: Vec<f32>,
    b: Vec<B>,
    offset: usize,
}

impl<B: Copy> Pair<B> {
    fn new(len: usize, offset: usize, seed: u64, b: impl Fn(f32) -> B) -> (String, Pair<B>) {
        let mut rnd = random(seed);
        let a = (0..len + offset).map(|_| rnd() * 0.1).collect();
        let b = (0..len + offset).map(|_| b(rnd())).collect();
        (format!("len {len} offset {offset}"), Pair { a, b, offset })
    }

    fn dot(&self, kernel: fn(&[f32], &[B]) -> f32) -> Vec<f32> {
        vec![kernel(&self.a[self.offset..], &self.b[self.offset..])]
    }

    /// Within 1e-5 of Σ|a·b|: what summing in another order may cost.
    fn close(&self, got: f32, want: f32, term: impl Fn(f32, B) -> f32) -> bool {
        let (a, b) = (&self.a[self.offset..], &self.b[self.offset..]);
        let scale: f32 = a.iter().zip(b).map(|(&x, &y)| term(x, y).abs()).sum();
        (got - want).abs() <= 1e-5 * scale.max(1e-3) + 1e-6
    }
}

fn f32_pairs() -> impl Iterator<Item = (String, Pair<f32>)> {
    shapes().map(|(len, offset)| Pair::new(len, offset, (len * 31 + offset) as u64, |v| v * 10.0))
}

/// Every code, -128 (never stored: codes are -127..=127) included.
fn i8_pairs() -> impl Iterator<Item = (String, Pair<i8>)> {
    shapes().map(|(len, offset)| {
        Pair::new(len, offset, (len * 37 + offset) as u64, |v| (v * 64.0) as i32 as i8)
    })
}

/// With a subnormal, the largest finite value and a negative zero where they fit.
fn f16_pairs() -> impl Iterator<Item = (String, Pair<f16>)> {
    shapes().map(|(len, offset)| {
        let (label, mut pair) =
            Pair::new(len, offset, (len * 41 + offset) as u64, |v| f16::from_f32(v * 0.1));
        if len > 3 {
            pair.b[offset] = f16::from_bits(0x0001);
            pair.b[offset + 1] = f16::MAX;
            pair.b[offset + 2] = f16::NEG_ZERO;
        }
        (label, pair)
    })
}

reference_test! {
    fn dot_f32_matches_its_reference(dot_f32::FAMILY) {
        cases: f32_pairs(),
        run: |k: Kernel<dot_f32::DotF32>, p: &Pair<f32>| p.dot(k.run),
        agree: |p: &Pair<f32>, g: f32, w: f32| p.close(g, w, |x, y| x * y),
    }
}

reference_test! {
    fn dot_f32_i8_matches_its_reference(dot_i8::FAMILY) {
        cases: i8_pairs(),
        run: |k: Kernel<dot_i8::DotF32I8>, p: &Pair<i8>| p.dot(k.run),
        agree: |p: &Pair<i8>, g: f32, w: f32| p.close(g, w, |x, y| x * y as f32),
    }
}

reference_test! {
    fn dot_f32_f16_matches_its_reference(dot_f16::FAMILY) {
        cases: f16_pairs(),
        run: |k: Kernel<dot_f16::DotF32F16>, p: &Pair<f16>| p.dot(k.run),
        agree: |p: &Pair<f16>, g: f32, w: f32| p.close(g, w, |x, y| x * y.to_f32()),
    }
}

#[test]
fn search_picks_simd_for_int8_and_f16_rows_where_the_cpu_has_it() {
    let (i8_name, f16_name) = (dot_i8::FAMILY.chosen().name, dot_f16::FAMILY.chosen().name);
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
fn similarity_uses_simd_where_the_cpu_has_it() {
    let name = dot_f32::FAMILY.chosen().name;
    let all: Vec<&str> = dot_f32::FAMILY.candidates().iter().map(|k| k.name).collect();
    eprintln!("dot_f32 kernel: {name} (candidates on this CPU: {all:?})");
    #[cfg(target_arch = "aarch64")]
    assert_eq!(name, "aarch64_neon_dot_f32_32n");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        assert_ne!(name, "reference_dot_f32");
    }
}
