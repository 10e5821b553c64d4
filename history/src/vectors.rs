//! Embeddings held in memory for exact search: one precision (f32, f16 or int8 with
//! a scale per vector), rows of one dimension, searched by a dot product with every
//! row a predicate accepts, the best k kept in a heap.
//!
//! This is what both stores search: the SQLite history ([`crate::FrameHistory`])
//! and the entries.log index of older owlets ([`crate::old_index`]). A store keeps the bytes
//! [`VectorSet::encode`] makes and hands them back to [`VectorSet::push_encoded`]
//! when it opens; row `i` here is the `i`-th vector pushed.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use owlet_kernels::{dot_f16, dot_f32, dot_i8};
use owlet_runtime::similarity::l2_normalize;

use crate::{Error, Precision, Result};

/// A row and its cosine similarity to the query.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The row.
    pub entry: usize,
    /// Its cosine similarity to the query.
    pub score: f32,
}

/// Storage of the vectors, by precision.
enum Rows {
    F32(Vec<f32>),
    F16(Vec<half::f16>),
    I8 { codes: Vec<i8>, scales: Vec<f32> },
}

/// Unit vectors held in memory in one precision, searched exactly (a scan with
/// owlet's dot kernels).
pub struct VectorSet {
    dim: usize,
    precision: Precision,
    rows: Rows,
    len: usize,
}

impl VectorSet {
    /// An empty set of `dim`-wide vectors stored in `precision`.
    pub fn new(dim: usize, precision: Precision) -> VectorSet {
        let rows = match precision {
            Precision::F32 => Rows::F32(Vec::new()),
            Precision::F16 => Rows::F16(Vec::new()),
            Precision::I8 => Rows::I8 { codes: Vec::new(), scales: Vec::new() },
        };
        VectorSet { dim, precision, rows, len: 0 }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes one stored vector takes (in memory and in a store).
    pub(crate) fn vector_bytes(&self) -> usize {
        self.precision.vector_bytes(self.dim)
    }

    /// Room for `rows` more without reallocating: a history of known size is
    /// loaded into one allocation, instead of doubling its way there (which
    /// briefly holds the old and the new copy: 3 GB to load 2 GB of f32).
    pub fn reserve(&mut self, rows: usize) {
        let values = rows.saturating_mul(self.dim);
        match &mut self.rows {
            Rows::F32(v) => v.reserve_exact(values),
            Rows::F16(v) => v.reserve_exact(values),
            Rows::I8 { codes, scales } => {
                codes.reserve_exact(values);
                scales.reserve_exact(rows);
            }
        }
    }

    /// Bytes the vectors take in memory.
    pub fn memory_bytes(&self) -> usize {
        self.len * self.vector_bytes()
    }

    /// The stored form of `embedding`: L2-normalised, then encoded in this set's
    /// precision (little-endian; int8 is its f32 scale then the codes).
    pub fn encode(&self, embedding: &[f32]) -> Result<Vec<u8>> {
        if embedding.len() != self.dim {
            return Err(Error::Invalid(format!(
                "embedding has {} values; the index holds {}-d vectors",
                embedding.len(),
                self.dim
            )));
        }
        let mut v = embedding.to_vec();
        l2_normalize(&mut v);
        Ok(match self.precision {
            Precision::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Precision::F16 => {
                v.iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect()
            }
            Precision::I8 => {
                let (s, c) = quantize_i8(&v);
                let mut out = s.to_le_bytes().to_vec();
                out.extend(c.iter().map(|&x| x as u8));
                out
            }
        })
    }

    /// Append a vector in its stored form (what [`VectorSet::encode`] made).
    pub fn push_encoded(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.len() != self.vector_bytes() {
            return Err(Error::Invalid(format!(
                "a stored vector of {} bytes; {}-d {:?} vectors take {}",
                bytes.len(),
                self.dim,
                self.precision,
                self.vector_bytes()
            )));
        }
        match &mut self.rows {
            Rows::F32(d) => d.extend(
                bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            ),
            Rows::F16(d) => {
                d.extend(bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]])))
            }
            Rows::I8 { codes, scales } => {
                scales.push(f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
                codes.extend(bytes[4..].iter().map(|&b| b as i8));
            }
        }
        self.len += 1;
        Ok(())
    }

    /// Row `i`, widened to f32.
    pub fn vector(&self, i: usize) -> Vec<f32> {
        let d = self.dim;
        match &self.rows {
            Rows::F32(v) => v[i * d..(i + 1) * d].to_vec(),
            Rows::F16(v) => v[i * d..(i + 1) * d].iter().map(|x| x.to_f32()).collect(),
            Rows::I8 { codes, scales } => {
                codes[i * d..(i + 1) * d].iter().map(|&c| c as f32 * scales[i]).collect()
            }
        }
    }

    /// Row `i` in its stored form, as [`VectorSet::encode`] made it.
    pub(crate) fn stored(&self, i: usize) -> Vec<u8> {
        let d = self.dim;
        match &self.rows {
            Rows::F32(v) => v[i * d..(i + 1) * d].iter().flat_map(|x| x.to_le_bytes()).collect(),
            Rows::F16(v) => v[i * d..(i + 1) * d].iter().flat_map(|x| x.to_le_bytes()).collect(),
            Rows::I8 { codes, scales } => {
                let mut out = scales[i].to_le_bytes().to_vec();
                out.extend(codes[i * d..(i + 1) * d].iter().map(|&c| c as u8));
                out
            }
        }
    }

    /// Keep the rows `keep` accepts (given each row's number), in order.
    pub fn retain(&mut self, mut keep: impl FnMut(usize) -> bool) {
        let d = self.dim;
        let kept: Vec<bool> = (0..self.len).map(&mut keep).collect();
        fn compact<T: Copy>(v: &mut Vec<T>, width: usize, kept: &[bool]) {
            let mut to = 0;
            for (i, &k) in kept.iter().enumerate() {
                if k {
                    v.copy_within(i * width..(i + 1) * width, to * width);
                    to += 1;
                }
            }
            v.truncate(to * width);
        }
        match &mut self.rows {
            Rows::F32(v) => compact(v, d, &kept),
            Rows::F16(v) => compact(v, d, &kept),
            Rows::I8 { codes, scales } => {
                compact(codes, d, &kept);
                compact(scales, 1, &kept);
            }
        }
        self.len = kept.iter().filter(|&&k| k).count();
    }

    /// The `k` rows most similar (cosine) to `query` among those `want` accepts,
    /// best first; ties go to the lower row.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        want: impl Fn(usize) -> bool,
    ) -> Result<Vec<Hit>> {
        if query.len() != self.dim {
            return Err(Error::Invalid(format!(
                "query has {} values; the index holds {}-d vectors",
                query.len(),
                self.dim
            )));
        }
        let mut q = query.to_vec();
        l2_normalize(&mut q);
        let d = self.dim;
        let mut top = TopK::new(k);
        match &self.rows {
            Rows::F32(v) => {
                for (i, row) in v.chunks_exact(d).enumerate() {
                    if want(i) {
                        top.push(i, dot_f32::dot(&q, row));
                    }
                }
            }
            Rows::F16(v) => {
                for (i, row) in v.chunks_exact(d).enumerate() {
                    if want(i) {
                        top.push(i, dot_f16::dot(&q, row));
                    }
                }
            }
            Rows::I8 { codes, scales } => {
                // The query stays f32: quantizing it too cost recall (0.989 top-10
                // on clustered 512-d data, against 0.99+ this way).
                for (i, row) in codes.chunks_exact(d).enumerate() {
                    if want(i) {
                        top.push(i, dot_i8::dot(&q, row) * scales[i]);
                    }
                }
            }
        }
        Ok(top.into_sorted())
    }
}

/// Symmetric int8: x ~= scale * code, scale = max|x| / 127.
pub(crate) fn quantize_i8(v: &[f32]) -> (f32, Vec<i8>) {
    let m = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    if m == 0.0 {
        return (0.0, vec![0; v.len()]);
    }
    let s = m / 127.0;
    (s, v.iter().map(|x| (x / s).round().clamp(-127.0, 127.0) as i8).collect())
}

/// The k best (row, score) pairs, kept in a min-heap.
struct TopK {
    k: usize,
    heap: BinaryHeap<MinScore>,
}

#[derive(PartialEq)]
struct MinScore(f32, usize);

impl Eq for MinScore {}

impl Ord for MinScore {
    fn cmp(&self, o: &Self) -> Ordering {
        // Reversed: the heap's top is the worst kept score. Ties: the lower row wins.
        o.0.total_cmp(&self.0).then(self.1.cmp(&o.1))
    }
}

impl PartialOrd for MinScore {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl TopK {
    fn new(k: usize) -> TopK {
        TopK { k, heap: BinaryHeap::with_capacity(k + 1) }
    }

    fn push(&mut self, entry: usize, score: f32) {
        if self.k == 0 {
            return;
        }
        if self.heap.len() < self.k {
            self.heap.push(MinScore(score, entry));
        } else if let Some(worst) = self.heap.peek() {
            if score > worst.0 || (score == worst.0 && entry < worst.1) {
                self.heap.pop();
                self.heap.push(MinScore(score, entry));
            }
        }
    }

    fn into_sorted(self) -> Vec<Hit> {
        let mut v: Vec<Hit> =
            self.heap.into_iter().map(|MinScore(score, entry)| Hit { entry, score }).collect();
        v.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.entry.cmp(&b.entry)));
        v
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    /// A random unit vector (uniform in the cube, normalised).
    pub(crate) fn random_unit(rng: &mut impl Rng, dim: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..dim).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
        l2_normalize(&mut v);
        v
    }

    #[test]
    fn a_vector_set_keeps_what_retain_accepts_in_order_for_every_precision() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        for p in [Precision::F32, Precision::F16, Precision::I8] {
            let dim = 13;
            let mut set = VectorSet::new(dim, p);
            let data: Vec<Vec<f32>> = (0..40).map(|_| random_unit(&mut rng, dim)).collect();
            for v in &data {
                set.push_encoded(&set.encode(v).unwrap()).unwrap();
            }
            let before: Vec<Vec<f32>> = (0..40).map(|i| set.vector(i)).collect();
            assert_eq!(set.stored(5), set.encode(&data[5]).unwrap(), "{p:?}: stored form");
            set.retain(|i| i % 3 != 0);
            let kept: Vec<usize> = (0..40).filter(|i| i % 3 != 0).collect();
            assert_eq!(set.len(), kept.len(), "{p:?}");
            assert_eq!(set.memory_bytes(), kept.len() * p.vector_bytes(dim));
            for (row, &was) in kept.iter().enumerate() {
                assert_eq!(set.vector(row), before[was], "{p:?}: row {row} was {was}");
            }
            // The best match of a kept vector is its new row.
            let hits = set.search(&data[kept[7]], 1, |_| true).unwrap();
            assert_eq!(hits[0].entry, 7, "{p:?}");
            // A stored form of the wrong size is refused, naming both sizes.
            let e = set.push_encoded(&[0u8; 3]).unwrap_err().to_string();
            assert!(e.contains("3 bytes"), "{e}");
        }
    }
}
