//! int8 matrix products for quantized graphs: `y = x · Wᵀ (+ bias)` with W int8 per
//! output channel and x quantized per row on the fly (dynamic quantization).
//!
//! The pieces, in the order a call runs them:
//! - `PackedWeights::pack`: once, at graph load. W ([N, K] int8, one scale per row
//!   of W = per output channel) is cut into panels of `nr` output channels; inside a
//!   panel, each step of 4 along K stores `nr` x 4 bytes, column after column, which
//!   is the operand shape of `vpmaddubsw`/`vpmaddwd` (x86) and `sdot` (ARM).
//! - `quantize_rows`: each row of x gets its own scale (max |x| / 127) and becomes
//!   int8, rows padded to the kernel's `mr` and K to its `k_align` with zeros.
//! - the micro-kernel: one `mr` x `nr` tile of int8 x int8 -> i32 sums over all of K.
//! - the epilogue: `y = acc * row_scale * channel_scale + bias`, straight into the
//!   output, so no i32 matrix is ever stored.
//!
//! Ragged shapes are handled by the zero padding: kernels only see whole tiles and
//! the epilogue writes only the real rows and columns. Every kernel must give the
//! same i32 sums as the scalar reference, exactly (`harness.rs`).

#[cfg(target_arch = "aarch64")]
mod aarch64_neon;
#[cfg(test)]
mod harness;
pub mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86_64_avx2;

use std::sync::OnceLock;

/// One `mr` x `nr` tile: `c[r * nr + j] = Σ_k a[r * lda + k] * panel(k, j)` for k in
/// `0..4 * k4`, with the panel laid out as `[k4][nr][4]`.
///
/// # Safety
/// `a` must be readable for `mr` rows of `lda >= 4 * k4` bytes, `b` for `k4 * nr * 4`
/// bytes, `c` writable for `mr * nr` i32, and the CPU must have the kernel's features.
pub type MicroKernel = unsafe fn(k4: usize, a: *const i8, lda: usize, b: *const i8, c: *mut i32);

/// An int8 GEMM micro-kernel and the shapes it works in.
#[derive(Clone, Copy)]
pub struct QGemmKernel {
    pub name: &'static str,
    /// Rows of x per tile.
    pub mr: usize,
    /// Output channels per tile (and per packed panel).
    pub nr: usize,
    /// K is padded to a multiple of this (4, or 16 where a kernel loads 16 bytes of x).
    pub k_align: usize,
    pub micro: MicroKernel,
}

impl std::fmt::Debug for QGemmKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}x{})", self.name, self.mr, self.nr)
    }
}

/// Every int8 kernel this CPU can run, reference first, best last.
pub fn candidates() -> Vec<QGemmKernel> {
    #[allow(unused_mut)]
    let mut v = vec![scalar::KERNEL];
    #[cfg(target_arch = "x86_64")]
    v.extend(x86_64_avx2::kernels());
    #[cfg(target_arch = "aarch64")]
    v.extend(aarch64_neon::kernels());
    v
}

/// The kernel quantized graphs use: the best this CPU has, or the scalar reference
/// under `OWLET_KERNELS=scalar`. Chosen once and logged.
pub fn best() -> QGemmKernel {
    static K: OnceLock<QGemmKernel> = OnceLock::new();
    *K.get_or_init(|| {
        let k = if std::env::var("OWLET_KERNELS").as_deref() == Ok("scalar") {
            scalar::KERNEL
        } else {
            *candidates().last().expect("the scalar kernel is always there")
        };
        log::info!("owlet int8 kernel: {k:?}");
        k
    })
}

fn round_up(x: usize, to: usize) -> usize {
    x.div_ceil(to) * to
}

/// Int8 weights packed for one kernel, with their per-channel scales and bias.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedWeights {
    /// Output channels.
    pub n: usize,
    /// Input features.
    pub k: usize,
    kp: usize,
    nr: usize,
    data: Vec<i8>,
    scales: Vec<f32>,
    bias: Option<Vec<f32>>,
}

impl PackedWeights {
    /// Pack `w` ([n, k] row-major: one row per output channel) for `kernel`.
    /// `scales` has one entry per channel; `bias`, if any, too.
    pub fn pack(
        kernel: &QGemmKernel,
        w: &[i8],
        n: usize,
        k: usize,
        scales: Vec<f32>,
        bias: Option<Vec<f32>>,
    ) -> PackedWeights {
        assert_eq!(w.len(), n * k, "weights are not [n, k]");
        assert_eq!(scales.len(), n, "one scale per output channel");
        assert!(bias.as_ref().is_none_or(|b| b.len() == n), "one bias per output channel");
        let (nr, kp) = (kernel.nr, round_up(k.max(1), kernel.k_align));
        let panels = n.div_ceil(nr);
        let mut data = vec![0i8; panels * kp * nr];
        for p in 0..panels {
            let panel = &mut data[p * kp * nr..(p + 1) * kp * nr];
            for j in 0..nr.min(n - p * nr) {
                let row = &w[(p * nr + j) * k..(p * nr + j + 1) * k];
                for (kk, &v) in row.iter().enumerate() {
                    panel[(kk / 4) * nr * 4 + j * 4 + kk % 4] = v;
                }
            }
        }
        PackedWeights { n, k, kp, nr, data, scales, bias }
    }

}

/// x ([m, k] f32) quantized per row: int8 values in `[-127, 127]`, rows of `kp`
/// bytes (zero padded), `mp` rows (zero rows up to a multiple of `mr`), and each
/// row's scale (x ≈ q * scale).
#[derive(Debug, Clone)]
pub struct QuantizedRows {
    pub data: Vec<i8>,
    pub scales: Vec<f32>,
    pub m: usize,
    pub mp: usize,
    pub kp: usize,
}

/// Quantize each row of `x` ([m, k]) symmetrically to int8 with its own scale.
pub fn quantize_rows(x: &[f32], m: usize, k: usize, kp: usize, mr: usize) -> QuantizedRows {
    assert_eq!(x.len(), m * k, "x is not [m, k]");
    assert!(kp >= k, "rows padded to less than k");
    let mp = round_up(m.max(1), mr);
    let mut data = vec![0i8; mp * kp];
    let mut scales = vec![0f32; m];
    for ((row, q), scale) in x.chunks_exact(k.max(1)).zip(data.chunks_exact_mut(kp)).zip(&mut scales) {
        let inv;
        (*scale, inv) = row_scale(row);
        for (q, &v) in q.iter_mut().zip(row) {
            // Round half away from zero, written so that it vectorises on baseline
            // x86-64 (SSE2 has no round instruction). |v * inv| <= 127 by construction.
            let s = v * inv;
            *q = (s + 0.5f32.copysign(s)) as i32 as i8;
        }
    }
    QuantizedRows { data, scales, m, mp, kp }
}

/// A raw pointer that tiles of one product write through from several threads;
/// every tile owns a disjoint set of output elements.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: tasks write disjoint elements (distinct panels = distinct columns).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// `y[m, n] = dequant(xq · Wᵀ) + bias`: every tile of panels `panels`, all rows.
fn run_panels(kernel: &QGemmKernel, xq: &QuantizedRows, w: &PackedWeights, panels: std::ops::Range<usize>, y: SharedOut) {
    let (mr, nr) = (kernel.mr, kernel.nr);
    let mut tile = vec![0i32; mr * nr];
    let zeros = vec![0f32; nr];
    for p in panels {
        let b = &w.data[p * w.kp * nr..(p + 1) * w.kp * nr];
        let (c0, cols) = (p * nr, nr.min(w.n - p * nr));
        let scales = &w.scales[c0..c0 + cols];
        let bias = w.bias.as_ref().map_or(&zeros[..cols], |b| &b[c0..c0 + cols]);
        for r0 in (0..xq.m).step_by(mr) {
            // SAFETY: xq has mp >= r0 + mr rows of kp bytes, b is one whole panel of kp
            // * nr bytes, tile holds mr * nr; `best`/`candidates` only offer kernels
            // whose CPU features were detected.
            unsafe { (kernel.micro)(w.kp / 4, xq.data.as_ptr().add(r0 * xq.kp), xq.kp, b.as_ptr(), tile.as_mut_ptr()) };
            for r in 0..mr.min(xq.m - r0) {
                let row_scale = xq.scales[r0 + r];
                // SAFETY: row r0 + r, columns c0..c0 + cols are inside y ([m, n]) and
                // only this panel's task writes them.
                let out = unsafe { std::slice::from_raw_parts_mut(y.0.add((r0 + r) * w.n + c0), cols) };
                let acc = &tile[r * nr..r * nr + cols];
                for (((o, &a), &s), &b) in out.iter_mut().zip(acc).zip(scales).zip(bias) {
                    *o = a as f32 * (row_scale * s) + b;
                }
            }
        }
    }
}

/// A row's scale (max |x| / 127) and its inverse. A row of zeros (or one that is
/// not finite) gets scale 1 and quantizes to zeros.
fn row_scale(row: &[f32]) -> (f32, f32) {
    // Eight running maxima: a plain fold is one serial chain that does not vectorise.
    let mut m = [0f32; 8];
    let chunks = row.chunks_exact(8);
    for &v in chunks.remainder() {
        m[0] = m[0].max(v.abs());
    }
    for c in chunks {
        for i in 0..8 {
            m[i] = m[i].max(c[i].abs());
        }
    }
    let max = m.iter().fold(0f32, |a, &b| a.max(b));
    if max > 0.0 && max.is_finite() {
        (max / 127.0, 127.0 / max)
    } else {
        (1.0, 0.0)
    }
}

/// `y = x · Wᵀ + bias` for `x` [m, k] f32 and packed int8 `w`; `y` is [m, n].
/// Splits the output channels over tract's thread pool (`engine::set_threads`).
pub fn qmatmul(kernel: &QGemmKernel, x: &[f32], m: usize, w: &PackedWeights, y: &mut [f32]) {
    assert_eq!(w.nr, kernel.nr, "weights were packed for another kernel");
    assert_eq!(x.len(), m * w.k, "x is not [m, k]");
    assert_eq!(y.len(), m * w.n, "y is not [m, n]");
    if m == 0 || w.n == 0 {
        return;
    }
    // Rows are quantized serially: it is ~1/n of the product's work, and waking the
    // pool a second time per product cost more than it saved (measured).
    let xq = quantize_rows(x, m, w.k, w.kp, kernel.mr);
    let out = SharedOut(y.as_mut_ptr());
    let panels = w.n.div_ceil(kernel.nr);
    use tract_linalg::multithread::{current_tract_executor, Executor};
    match current_tract_executor() {
        Executor::MultiThread(pool) if panels > 1 => {
            // A few tasks per thread: even shares when panels don't divide evenly.
            let tasks = (pool.current_num_threads() * 4).min(panels);
            let xq = &xq;
            pool.scope(|s| {
                for t in 0..tasks {
                    let range = panels * t / tasks..panels * (t + 1) / tasks;
                    s.spawn(move |_| run_panels(kernel, xq, w, range, out));
                }
            });
        }
        _ => run_panels(kernel, &xq, w, 0..panels, out),
    }
}

/// Symmetric per-row int8 quantization of a weight matrix ([n, k] f32): the int8
/// values and one scale per row. What owlet-quantize stores for each channel.
pub fn quantize_weights(w: &[f32], n: usize, k: usize) -> (Vec<i8>, Vec<f32>) {
    let xq = quantize_rows(w, n, k, k.max(1), 1);
    let mut q = Vec::with_capacity(n * k);
    for r in 0..n {
        q.extend_from_slice(&xq.data[r * xq.kp..r * xq.kp + k]);
    }
    (q, xq.scales)
}
