//! Scalar references: the definition every SIMD kernel is tested against.

/// Dot product, accumulated in f64 (the reference is the exact-ish answer).
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum::<f64>() as f32
}
