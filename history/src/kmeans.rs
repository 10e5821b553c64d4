//! k-means++ on unit vectors (spherical k-means: cosine similarity, centroids
//! re-normalised), seeded so that a run can be repeated.

use rand::{Rng, SeedableRng};

use owlet_runtime::similarity::{dot, l2_normalize};

/// The result of [`kmeans`].
#[derive(Debug, Clone)]
pub struct Clustering {
    /// Unit-length centroids, `k` x `dim`, row-major.
    pub centroids: Vec<f32>,
    /// The cluster of each point.
    pub assignment: Vec<usize>,
    /// Lloyd iterations run.
    pub iterations: usize,
}

/// Cluster `n` unit vectors of `dim` (row-major `points`) into `k` groups.
/// k-means++ seeding (each new centre drawn with probability proportional to its
/// squared distance 2 - 2cos from the nearest chosen one), then Lloyd iterations
/// until no point changes cluster or `max_iter`.
pub fn kmeans(points: &[f32], dim: usize, k: usize, max_iter: usize, seed: u64) -> Clustering {
    let n = points.len().checked_div(dim).unwrap_or(0);
    let k = k.min(n).max(1);
    let row = |i: usize| &points[i * dim..(i + 1) * dim];
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    if n == 0 {
        return Clustering { centroids: vec![], assignment: vec![], iterations: 0 };
    }
    let mut centroids: Vec<f32> = row(rng.random_range(0..n)).to_vec();
    let mut d2: Vec<f32> =
        (0..n).map(|i| (2.0 - 2.0 * dot(row(i), &centroids[..dim])).max(0.0)).collect();
    while centroids.len() / dim < k {
        let total: f64 = d2.iter().map(|&x| x as f64).sum();
        let pick = if total <= 0.0 {
            rng.random_range(0..n)
        } else {
            let mut r = rng.random::<f64>() * total;
            let mut chosen = n - 1;
            for (i, &x) in d2.iter().enumerate() {
                r -= x as f64;
                if r <= 0.0 {
                    chosen = i;
                    break;
                }
            }
            chosen
        };
        let c = row(pick).to_vec();
        for (i, d) in d2.iter_mut().enumerate() {
            *d = d.min((2.0 - 2.0 * dot(row(i), &c)).max(0.0));
        }
        centroids.extend_from_slice(&c);
    }
    let mut assignment = vec![usize::MAX; n];
    let mut iterations = 0;
    for _ in 0..max_iter.max(1) {
        iterations += 1;
        let mut changed = false;
        for (i, a) in assignment.iter_mut().enumerate() {
            let best = (0..k)
                .map(|c| (c, dot(row(i), &centroids[c * dim..(c + 1) * dim])))
                .max_by(|x, y| x.1.total_cmp(&y.1).then(y.0.cmp(&x.0)))
                .map(|(c, _)| c)
                .unwrap_or(0);
            if *a != best {
                *a = best;
                changed = true;
            }
        }
        if !changed {
            break;
        }
        let mut sums = vec![0f32; k * dim];
        let mut counts = vec![0usize; k];
        for (i, &a) in assignment.iter().enumerate() {
            counts[a] += 1;
            for (s, x) in sums[a * dim..(a + 1) * dim].iter_mut().zip(row(i)) {
                *s += x;
            }
        }
        for c in 0..k {
            if counts[c] == 0 {
                continue; // an empty cluster keeps its centre
            }
            let s = &mut sums[c * dim..(c + 1) * dim];
            l2_normalize(s);
            centroids[c * dim..(c + 1) * dim].copy_from_slice(s);
        }
    }
    Clustering { centroids, assignment, iterations }
}

/// The adjusted Rand index of two labelings (1: identical up to renaming, ~0: chance).
#[cfg(test)]
pub fn adjusted_rand_index(a: &[usize], b: &[usize]) -> f64 {
    use std::collections::HashMap;
    let n = a.len() as f64;
    let c2 = |x: f64| x * (x - 1.0) / 2.0;
    let mut table: HashMap<(usize, usize), f64> = HashMap::new();
    let mut ra: HashMap<usize, f64> = HashMap::new();
    let mut rb: HashMap<usize, f64> = HashMap::new();
    for (&x, &y) in a.iter().zip(b) {
        *table.entry((x, y)).or_default() += 1.0;
        *ra.entry(x).or_default() += 1.0;
        *rb.entry(y).or_default() += 1.0;
    }
    let index: f64 = table.values().map(|&v| c2(v)).sum();
    let sa: f64 = ra.values().map(|&v| c2(v)).sum();
    let sb: f64 = rb.values().map(|&v| c2(v)).sum();
    let expected = sa * sb / c2(n);
    let max = (sa + sb) / 2.0;
    if (max - expected).abs() < 1e-12 {
        return 1.0;
    }
    (index - expected) / (max - expected)
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::vectors::tests::random_unit;

    #[test]
    fn kmeans_recovers_planted_clusters() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        let dim = 64;
        let k = 6;
        let centres: Vec<Vec<f32>> = (0..k).map(|_| random_unit(&mut rng, dim)).collect();
        let mut points = Vec::new();
        let mut truth = Vec::new();
        for i in 0..600 {
            let c = i % k;
            let mut v: Vec<f32> =
                centres[c].iter().map(|x| x + (rng.random::<f32>() - 0.5) * 0.15).collect();
            l2_normalize(&mut v);
            points.extend(v);
            truth.push(c);
        }
        let r = kmeans(&points, dim, k, 50, 42);
        let ari = adjusted_rand_index(&truth, &r.assignment);
        assert!(ari > 0.99, "adjusted Rand index {ari}");
        let again = kmeans(&points, dim, k, 50, 42);
        assert_eq!(again.assignment, r.assignment, "same seed, same clusters");
        assert!((adjusted_rand_index(&truth, &truth) - 1.0).abs() < 1e-12);
    }
}
