//! Embedding arithmetic: L2 normalisation, cosine matrices, softmax.

/// Row-major embeddings, one row per image or text.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// The width of a row.
    pub dim: usize,
    /// The rows, one after another.
    pub data: Vec<f32>,
}

impl Embeddings {
    /// Rows of `dim` from `data` (its length a multiple of `dim`).
    pub fn new(dim: usize, data: Vec<f32>) -> Embeddings {
        debug_assert!(dim > 0 && data.len().is_multiple_of(dim));
        Embeddings { dim, data }
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.data.len() / self.dim
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..][..self.dim]
    }

    /// The rows in order.
    pub fn rows(&self) -> impl Iterator<Item = &[f32]> {
        self.data.chunks_exact(self.dim)
    }

    /// Scale every row to unit length (a zero row stays zero).
    pub fn normalize(&mut self) {
        for row in self.data.chunks_exact_mut(self.dim) {
            l2_normalize(row);
        }
    }

    /// `self[i] . other[j]` for every pair: cosine similarity when both are normalised.
    pub fn dot_matrix(&self, other: &Embeddings) -> Vec<Vec<f32>> {
        assert_eq!(self.dim, other.dim, "embedding dimensions differ");
        self.rows().map(|a| other.rows().map(|b| dot(a, b)).collect()).collect()
    }
}

/// Dot product with owlet's SIMD kernel (`owlet_kernels::dot_f32`). Panics if the
/// lengths differ (a caller bug).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    crate::kernels::dot_f32::dot(a, b)
}

/// Scales `v` to unit length (a zero vector stays zero).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    if norm > 0.0 {
        for x in v {
            *x = (*x as f64 / norm) as f32;
        }
    }
}

/// Numerically stable softmax.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = logits.iter().map(|&l| ((l - max) as f64).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|&e| (e / sum) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_survives_large_logits() {
        let p = softmax(&[1000.0, 999.0, -1000.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[0] > p[1] && p[2] == 0.0);
    }

    #[test]
    fn normalized_rows_have_unit_cosine_with_themselves() {
        let mut e = Embeddings::new(3, vec![3.0, 4.0, 0.0, 0.0, 0.0, 0.0]);
        e.normalize();
        let m = e.dot_matrix(&e);
        assert!((m[0][0] - 1.0).abs() < 1e-6);
        assert_eq!(m[1][1], 0.0);
    }
}
