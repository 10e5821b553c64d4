//! int8 matrix products for quantized graphs: `y = x · Wᵀ (+ bias)` with W int8 per
//! output channel and x quantized per row on the fly (dynamic quantization).
//!
//! The pieces, in the order a call runs them:
//! - `PackedWeights::pack`: once, at graph load. W ([N, K] int8, one scale per row
//!   of W = per output channel) is cut into panels of `nr` output channels; inside a
//!   panel, each step of 4 along K stores `nr` x 4 bytes, column after column, which
//!   is the operand shape of `vpmaddubsw`/`vpmaddwd` (x86) and `sdot` (ARM).
//! - `quantize_rows`: each row of x gets its own scale and zero point from its
//!   range (min and max, 0 included: 255 levels over what the row holds, where a
//!   symmetric scale spends half of them on values a GELU's output never takes)
//!   and becomes int8, rows padded to the kernel's `mr` and K to its `k_align` with
//!   zeros. Or, for a graph calibrated by owlet-quantize (`XScale::Static`), every
//!   row takes the one symmetric scale found on the calibration set, and values
//!   beyond it clamp.
//! - the micro-kernel: one `mr` x `nr` tile of int8 x int8 -> i32 sums over all of K.
//! - the epilogue: `y = (acc - row_zero * Σ_k W) * row_scale * channel_scale +
//!   bias` (the zero point's part in float), straight into the output, so no i32
//!   matrix is ever stored.
//!
//! Kernels whose multiply wants an unsigned operand (x86's `vpmaddubsw`, AVX-512's
//! `vpdpbusd`) take x + 128 as u8 (`Operands::UnsignedX`); the 128 joins the row's
//! zero point, which the epilogue takes back off. Every kernel's i32 sums are exact
//! either way. Without VNNI, W is requantized to 7 bits for them.
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
#[cfg(target_arch = "x86_64")]
mod x86_64_avx512;
#[cfg(target_arch = "x86_64")]
mod x86_64_avxvnni;

use super::{Candidate, Family};

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
    /// How x and W are handed to `micro`.
    pub operands: Operands,
    pub micro: MicroKernel,
    /// The same tile for one row of x, where the kernel has one: the last tile of a
    /// product whose rows leave one over, a decoder step's single row above all,
    /// which `micro` would compute `mr` times over (its other rows are padding).
    pub micro_1: Option<MicroKernel>,
}

/// The operand forms a micro-kernel multiplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operands {
    /// x and W as int8 in [-127, 127].
    Signed,
    /// x + 128 as u8 (bits in the `i8` buffers) and W within ±`w_max`. The product
    /// is Σ (x + 128) · W = Σ x · W + 128 · Σ W: the epilogue subtracts the second
    /// term, which packing computed per channel.
    ///
    /// `w_max` 64 for `vpmaddubsw` (AVX2), which sums two u8 x i8 products into a
    /// saturating i16: 2 x 255 x 64 = 32640 stays below 32767 where 2 x 255 x 127
    /// would not. Costs one bit of weight precision (as onnxruntime's
    /// `reduce_range`) and saves the sign moves. 127 for `vpdpbusd` (VNNI), which
    /// sums into i32 directly.
    UnsignedX { w_max: i32 },
}

impl Operands {
    /// What is added to each int8 x before the kernel sees it.
    pub fn x_offset(self) -> i32 {
        match self {
            Operands::Signed => 0,
            Operands::UnsignedX { .. } => 128,
        }
    }

    /// The largest |W| the kernel takes.
    pub fn w_max(self) -> i32 {
        match self {
            Operands::Signed => 127,
            Operands::UnsignedX { w_max } => w_max,
        }
    }

    /// int8 weights (one scale per row of `w`, `k` per row) in the range the kernel
    /// takes, with their scales: unchanged for `Signed`, else requantized, rounding
    /// to nearest (half away from zero), with the scale grown to match.
    pub fn weights(self, w: &[i8], scales: &[f32]) -> (Vec<i8>, Vec<f32>) {
        let w_max = self.w_max();
        if w_max == 127 {
            return (w.to_vec(), scales.to_vec());
        }
        let q = w
            .iter()
            .map(|&v| {
                // round(v * w_max / 127) in integers: no float rounding to argue about.
                let num = v as i32 * w_max * 2;
                ((num + 127 * num.signum()) / 254) as i8
            })
            .collect();
        let grow = 127.0 / w_max as f32;
        (q, scales.iter().map(|s| s * grow).collect())
    }
}

impl QGemmKernel {
    /// One tile whose first `rows` rows (at most `mr`) are real: `micro_1` where
    /// that is one row and the kernel has it, `micro` otherwise. Only the real rows
    /// of `c` are meaningful afterwards.
    ///
    /// # Safety
    /// As `MicroKernel`.
    #[inline]
    pub unsafe fn tile(
        &self,
        rows: usize,
        k4: usize,
        a: *const i8,
        lda: usize,
        b: *const i8,
        c: *mut i32,
    ) {
        // SAFETY: the caller's guarantees are the kernel's; micro_1 reads one row.
        unsafe {
            match self.micro_1 {
                Some(one_row) if rows == 1 => one_row(k4, a, lda, b, c),
                _ => (self.micro)(k4, a, lda, b, c),
            }
        }
    }
}

impl std::fmt::Debug for QGemmKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}x{})", self.name, self.mr, self.nr)
    }
}

/// Every int8 kernel this CPU can run, reference first, best last.
fn candidates() -> Vec<QGemmKernel> {
    #[allow(unused_mut)]
    let mut v = vec![scalar::KERNEL];
    #[cfg(target_arch = "x86_64")]
    v.extend(x86_64_avx2::kernels());
    #[cfg(target_arch = "x86_64")]
    v.extend(x86_64_avxvnni::kernels());
    #[cfg(target_arch = "x86_64")]
    v.extend(x86_64_avx512::kernels());
    #[cfg(target_arch = "aarch64")]
    v.extend(aarch64_neon::kernels());
    v
}

/// The int8 products. `RuntimeOptions::kernel_choice` naming one of them for "int8"
/// measures another kernel's speed or accuracy on the same machine, e.g. AVX2's
/// 7-bit weights on a VNNI machine.
pub static FAMILY: Family<QGemmKernel> = Family::new("int8", candidates);

impl Candidate for QGemmKernel {
    fn name(&self) -> &'static str {
        self.name
    }
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
    /// Per channel, scale · Σ_k W (W as the kernel takes it): a row's zero point
    /// times Σ_k W is what the kernel's sums carry beyond Σ (x / row scale) · W,
    /// and the epilogue takes it off in float, scaled (an i32 multiply per output
    /// cost 3-6% of a graph).
    scaled_colsums: Vec<f32>,
    /// The output channels' split into separate outputs (`concat`): one entry, n,
    /// for a single layer.
    parts: Vec<usize>,
}

impl PackedWeights {
    /// Pack `w` ([n, k] row-major: one row per output channel) for `kernel`.
    /// `scales` has one entry per channel; `bias`, if any, too. Weights are brought
    /// into the kernel's range first (`Operands::weights`).
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
        let (w, scales) = kernel.operands.weights(w, &scales);
        let scaled_colsums = (0..n)
            .map(|j| {
                w[j * k..(j + 1) * k].iter().map(|&v| v as i32).sum::<i32>() as f32 * scales[j]
            })
            .collect();
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
        PackedWeights { n, k, kp, nr, data, scales, bias, scaled_colsums, parts: vec![n] }
    }

    /// Several layers that read the same x, as one: their output channels side by
    /// side, so one product (one pass of x's quantization, one fork-join) computes
    /// them all, each into its own output (`qmatmul_parts`). Attention's Q, K and V
    /// are the case. None where the parts differ in K or kernel, or where one but
    /// the last does not fill whole panels (a panel then would straddle two
    /// outputs).
    pub fn concat(parts: &[&PackedWeights]) -> Option<PackedWeights> {
        let first = parts.first()?;
        if parts.iter().any(|p| p.k != first.k || p.kp != first.kp || p.nr != first.nr)
            || parts[..parts.len() - 1].iter().any(|p| p.n % p.nr != 0)
        {
            return None;
        }
        let n = parts.iter().map(|p| p.n).sum();
        let mut data = Vec::with_capacity(parts.iter().map(|p| p.data.len()).sum());
        let (mut scales, mut scaled_colsums) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let any_bias = parts.iter().any(|p| p.bias.is_some());
        let mut bias = Vec::with_capacity(if any_bias { n } else { 0 });
        let mut split = Vec::with_capacity(parts.len());
        for p in parts {
            data.extend_from_slice(&p.data);
            scales.extend_from_slice(&p.scales);
            scaled_colsums.extend_from_slice(&p.scaled_colsums);
            if any_bias {
                bias.extend(p.bias.as_ref().map_or(vec![0.0; p.n], Clone::clone));
            }
            split.extend_from_slice(&p.parts);
        }
        let bias = any_bias.then_some(bias);
        Some(PackedWeights {
            n,
            k: first.k,
            kp: first.kp,
            nr: first.nr,
            data,
            scales,
            bias,
            scaled_colsums,
            parts: split,
        })
    }

    /// The widths of the outputs `qmatmul_parts` writes (`[n]` unless `concat`).
    pub fn parts(&self) -> &[usize] {
        &self.parts
    }
}

/// Where the activations' int8 scale (and zero point) comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum XScale {
    /// Each row its own, found as the product runs (dynamic): the row's range
    /// [min(x, 0), max(x, 0)] over 254 steps, with the zero point that puts min on
    /// -127. The default for activations.
    PerRow,
    /// Each row its own, symmetric: max |x| / 127, zero point 0. Weights (one row
    /// per output channel) are quantized so.
    PerRowSymmetric,
    /// One symmetric scale for every row, found on a calibration set (static):
    /// saves the pass over each row for its range; values past ±127 steps clamp.
    Static(f32),
}

/// x ([m, k] f32) quantized per row: int8 values in `[-127, 127]` (plus the
/// kernel's x offset), rows of `kp` bytes (zero padded), `mp` rows (zero rows up to
/// a multiple of `mr`), and each row's scale and zero point: x ≈ (q - zero) * scale,
/// with q the stored value (u8 bits where the offset is 128).
#[derive(Debug, Clone)]
pub struct QuantizedRows {
    pub data: Vec<i8>,
    pub scales: Vec<f32>,
    pub zeros: Vec<i32>,
    pub m: usize,
    /// Rows padded to the kernel's tile (checked by the harness).
    pub mp: usize,
    pub kp: usize,
}

/// Quantize each row of `x` ([m, k]) to int8 as `xs` says, and add `x_offset` (0,
/// or 128 for kernels that take x as u8: the i8 buffer then holds u8 bits). K
/// padding stays 0 either way: it meets zero weights.
pub fn quantize_rows(
    x: &[f32],
    m: usize,
    k: usize,
    kp: usize,
    mr: usize,
    x_offset: i32,
    xs: XScale,
) -> QuantizedRows {
    assert_eq!(x.len(), m * k, "x is not [m, k]");
    assert!(kp >= k, "rows padded to less than k");
    let mp = round_up(m.max(1), mr);
    let mut data = vec![0i8; mp * kp];
    let mut scales = vec![0f32; m];
    let mut zeros = vec![0i32; m];
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2; each q has kp >= k bytes.
        quantize_each_row(x, k, &mut data, kp, &mut scales, &mut zeros, |row, q| unsafe {
            x86_64_avx2::quantize_row(row, q, x_offset, xs)
        });
        return QuantizedRows { data, scales, zeros, m, mp, kp };
    }
    quantize_into(x, k, &mut data, kp, &mut scales, &mut zeros, x_offset, xs);
    QuantizedRows { data, scales, zeros, m, mp, kp }
}

/// Rows of `x` ([.., k]) into rows of `data` (`kp` bytes each) by `quantize_row`,
/// which writes one row's values and returns its scale and zero point.
fn quantize_each_row(
    x: &[f32],
    k: usize,
    data: &mut [i8],
    kp: usize,
    scales: &mut [f32],
    zeros: &mut [i32],
    mut quantize_row: impl FnMut(&[f32], &mut [i8]) -> (f32, i32),
) {
    for (((row, q), scale), zero) in
        x.chunks_exact(k.max(1)).zip(data.chunks_exact_mut(kp)).zip(scales).zip(zeros)
    {
        (*scale, *zero) = quantize_row(row, q);
    }
}

/// How one row is quantized: x ≈ (q - zero) · scale, q = round(x · inv) + zero
/// clamped to ±127 (before the kernel's offset).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RowParams {
    pub scale: f32,
    pub inv: f32,
    pub zero: i32,
}

impl RowParams {
    /// A row that quantizes to zeros: all zeros, or not finite.
    const ZEROS: RowParams = RowParams { scale: 1.0, inv: 0.0, zero: 0 };

    /// Symmetric, from max |x|: (max / 127, 127 / max, 0).
    #[inline(always)]
    pub fn symmetric(max: f32) -> RowParams {
        if max > 0.0 && max.is_finite() {
            RowParams { scale: max / 127.0, inv: 127.0 / max, zero: 0 }
        } else {
            RowParams::ZEROS
        }
    }

    /// From the row's min and max: the range with 0 in it over 254 steps, min on
    /// -127. Including 0 keeps the zero point within ±127 (and exact zeros exact).
    #[inline(always)]
    pub fn asymmetric(min: f32, max: f32) -> RowParams {
        let (lo, hi) = (min.min(0.0), max.max(0.0));
        let range = hi - lo;
        if !(range > 0.0 && range.is_finite()) {
            return RowParams::ZEROS;
        }
        let inv = 254.0 / range;
        // lo · inv is in [-254, 0]; a few per row, so the plain cast is fine here.
        let zero = -127 - (lo * inv).round_ties_even() as i32;
        RowParams { scale: range / 254.0, inv, zero: zero.clamp(-127, 127) }
    }

    /// The parameters `xs` gives a row whose range and max |x| `min_max` and
    /// `max_abs` find (portable or SIMD code: only what `xs` needs is called).
    #[inline(always)]
    pub fn of(
        xs: XScale,
        min_max: impl FnOnce() -> (f32, f32),
        max_abs: impl FnOnce() -> f32,
    ) -> RowParams {
        match xs {
            XScale::PerRow => {
                let (min, max) = min_max();
                RowParams::asymmetric(min, max)
            }
            XScale::PerRowSymmetric => RowParams::symmetric(max_abs()),
            XScale::Static(s) => RowParams::fixed(s),
        }
    }

    /// One value: `x · inv` (NaN taken as 0, so it lands on the zero point) plus
    /// the zero point, clamped to ±127, rounded, plus the kernel's `x_offset`, as
    /// the stored byte. inv is 0 for a row of zeros or one with an infinity: every
    /// value then becomes the zero point. The clamp bites under a static scale (a
    /// value past the calibrated range) and on a row's max rounding up to 128; it
    /// keeps -128 out, which AVX2's sign-moving kernel could not negate. The AVX2
    /// quantizer does the same operations in the same order, 8 lanes at a time.
    #[inline(always)]
    pub fn quantize(self, v: f32, x_offset: i32) -> i8 {
        let t = v * self.inv;
        let t = if t.is_nan() { 0.0 } else { t };
        (round_to_int((t + self.zero as f32).clamp(-127.0, 127.0)) + x_offset) as u8 as i8
    }

    /// A static scale (`XScale::Static`): symmetric, the same for every row.
    pub fn fixed(s: f32) -> RowParams {
        if s > 0.0 && s.is_finite() {
            RowParams { scale: s, inv: 1.0 / s, zero: 0 }
        } else {
            RowParams::ZEROS
        }
    }
}

/// `quantize_rows`' work in portable code (what the compiler makes of it for the
/// target's baseline: SSE2 on x86-64, NEON on aarch64). Visible to the tests, which
/// check the AVX2 row quantizer against it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn quantize_into(
    x: &[f32],
    k: usize,
    data: &mut [i8],
    kp: usize,
    scales: &mut [f32],
    zeros: &mut [i32],
    x_offset: i32,
    xs: XScale,
) {
    quantize_each_row(x, k, data, kp, scales, zeros, |row, q| {
        let p = RowParams::of(xs, || row_min_max(row), || row_max_abs(row));
        for (q, &v) in q.iter_mut().zip(row) {
            *q = p.quantize(v, x_offset);
        }
        (p.scale, p.zero + x_offset)
    });
}

/// `s` (within ±127 here: |x| <= max |x|) rounded to the nearest integer, ties to
/// even; NaN gives 0. Adding 1.5 · 2^23 moves the float into the binade where its
/// unit is 1, so the FPU's own rounding leaves the integer in the low mantissa bits:
/// a float add and integer ops, which every target vectorises (a float-to-int `as`
/// does not: Rust's saturating cast stays scalar on x86-64, and quantizing the
/// activations took more time than the int8 products themselves).
#[inline(always)]
fn round_to_int(s: f32) -> i32 {
    const SHIFT: f32 = 12_582_912.0; // 1.5 · 2^23
    const SHIFT_BITS: i32 = 0x4B40_0000;
    let r = (s + SHIFT).to_bits() as i32 - SHIFT_BITS;
    if r.unsigned_abs() <= 127 {
        r
    } else {
        0 // NaN (out-of-range values cannot occur)
    }
}

/// A raw pointer that tiles of one product write through from several threads;
/// every tile owns a disjoint set of output elements.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: tasks write disjoint elements (distinct panels = distinct columns).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// One output of a product: `[m, width]`, holding the product's columns `start..start
/// + width`.
#[derive(Clone, Copy)]
struct Segment {
    out: SharedOut,
    start: usize,
    width: usize,
}

/// `y[m, n] = dequant(xq · Wᵀ) + bias`: every tile of panels `panels`, all rows,
/// each panel's columns into the segment that holds them (whole panels only, as
/// `PackedWeights::concat` ensures).
fn run_panels(
    kernel: &QGemmKernel,
    xq: &QuantizedRows,
    w: &PackedWeights,
    panels: std::ops::Range<usize>,
    segments: &[Segment],
) {
    let (mr, nr) = (kernel.mr, kernel.nr);
    let mut tile = vec![0i32; mr * nr];
    let zeros = vec![0f32; nr];
    for p in panels {
        let b = &w.data[p * w.kp * nr..(p + 1) * w.kp * nr];
        let (c0, cols) = (p * nr, nr.min(w.n - p * nr));
        let seg = segments
            .iter()
            .find(|s| (s.start..s.start + s.width).contains(&c0))
            .expect("segments cover every column");
        debug_assert!(c0 + cols <= seg.start + seg.width, "a panel straddles two outputs");
        let scales = &w.scales[c0..c0 + cols];
        let bias = w.bias.as_ref().map_or(&zeros[..cols], |b| &b[c0..c0 + cols]);
        let scaled_colsums = &w.scaled_colsums[c0..c0 + cols];
        for r0 in (0..xq.m).step_by(mr) {
            // SAFETY: xq has mp >= r0 + mr rows of kp bytes, b is one whole panel of kp
            // * nr bytes, tile holds mr * nr; `best`/`candidates` only offer kernels
            // whose CPU features were detected.
            unsafe {
                kernel.tile(
                    mr.min(xq.m - r0),
                    w.kp / 4,
                    xq.data.as_ptr().add(r0 * xq.kp),
                    xq.kp,
                    b.as_ptr(),
                    tile.as_mut_ptr(),
                )
            };
            for r in 0..mr.min(xq.m - r0) {
                let row_scale = xq.scales[r0 + r];
                let row_zero = row_scale * xq.zeros[r0 + r] as f32;
                // SAFETY: row r0 + r, columns c0 - start.. + cols are inside the
                // segment's output ([m, width]) and only this panel's task writes them.
                let out = unsafe {
                    std::slice::from_raw_parts_mut(
                        seg.out.0.add((r0 + r) * seg.width + c0 - seg.start),
                        cols,
                    )
                };
                let acc = &tile[r * nr..r * nr + cols];
                // (a - zero · Σ W) · row_scale · s + b, the zero's part in float: both
                // parts are within a few 1e5 of the sums' units, far inside f32's
                // precision next to the quantization's own error.
                for ((((o, &a), &cs), &s), &b) in
                    out.iter_mut().zip(acc).zip(scaled_colsums).zip(scales).zip(bias)
                {
                    *o = a as f32 * (row_scale * s) - row_zero * cs + b;
                }
            }
        }
    }
}

/// A row's max |x|, passing over NaN (0 for an empty row).
#[inline(always)]
fn row_max_abs(row: &[f32]) -> f32 {
    // Sixteen running maxima: a plain fold is one serial chain that does not
    // vectorise. `if a > m` rather than `f32::max`: a compare and a select (maxps),
    // where max's NaN rules cost a blend per step; a NaN is passed over either way.
    let mut m = [0f32; 16];
    let chunks = row.chunks_exact(16);
    for &v in chunks.remainder() {
        let a = v.abs();
        m[0] = if a > m[0] { a } else { m[0] };
    }
    for c in chunks {
        for i in 0..16 {
            let a = c[i].abs();
            m[i] = if a > m[i] { a } else { m[i] };
        }
    }
    m.iter().fold(0f32, |a, &b| a.max(b))
}

/// A row's min and max, passing over NaN, with 0 in the range ((0, 0) for an
/// empty row), as `row_max_abs` does it.
#[inline(always)]
fn row_min_max(row: &[f32]) -> (f32, f32) {
    let (mut lo, mut hi) = ([0f32; 16], [0f32; 16]);
    let chunks = row.chunks_exact(16);
    for &v in chunks.remainder() {
        lo[0] = if v < lo[0] { v } else { lo[0] };
        hi[0] = if v > hi[0] { v } else { hi[0] };
    }
    for c in chunks {
        for i in 0..16 {
            lo[i] = if c[i] < lo[i] { c[i] } else { lo[i] };
            hi[i] = if c[i] > hi[i] { c[i] } else { hi[i] };
        }
    }
    (lo.iter().fold(0f32, |a, &b| a.min(b)), hi.iter().fold(0f32, |a, &b| a.max(b)))
}

/// `y = x · Wᵀ + bias` for `x` [m, k] f32 (quantized with `xs`) and packed int8
/// `w`; `y` is [m, n].
/// Splits the output channels over tract's thread pool (`engine::set_threads`).
pub fn qmatmul(
    kernel: &QGemmKernel,
    x: &[f32],
    m: usize,
    w: &PackedWeights,
    xs: XScale,
    y: &mut [f32],
) {
    qmatmul_into(kernel, x, m, w, xs, &mut [y], &[w.n]);
}

/// `qmatmul` for weights made by `PackedWeights::concat`: `ys[i]` is [m, parts[i]],
/// the i-th layer's output.
pub fn qmatmul_parts(
    kernel: &QGemmKernel,
    x: &[f32],
    m: usize,
    w: &PackedWeights,
    xs: XScale,
    ys: &mut [&mut [f32]],
) {
    qmatmul_into(kernel, x, m, w, xs, ys, &w.parts);
}

fn qmatmul_into(
    kernel: &QGemmKernel,
    x: &[f32],
    m: usize,
    w: &PackedWeights,
    xs: XScale,
    ys: &mut [&mut [f32]],
    widths: &[usize],
) {
    assert_eq!(w.nr, kernel.nr, "weights were packed for another kernel");
    assert_eq!(x.len(), m * w.k, "x is not [m, k]");
    assert_eq!(ys.len(), widths.len(), "one output per part");
    assert_eq!(widths.iter().sum::<usize>(), w.n, "the parts are not n wide");
    let mut start = 0;
    let segments: Vec<Segment> = ys
        .iter_mut()
        .zip(widths)
        .map(|(y, &width)| {
            assert_eq!(y.len(), m * width, "an output is not [m, its part's width]");
            assert!(start % kernel.nr == 0, "an output does not start on a panel");
            let seg = Segment { out: SharedOut(y.as_mut_ptr()), start, width };
            start += width;
            seg
        })
        .collect();
    if m == 0 || w.n == 0 {
        return;
    }
    // Rows are quantized serially: it is ~1/n of the product's work, and waking the
    // pool a second time per product cost more than it saved (measured).
    let xq = quantize_rows(x, m, w.k, w.kp, kernel.mr, kernel.operands.x_offset(), xs);
    let segments = &segments[..];
    let panels = w.n.div_ceil(kernel.nr);
    use tract_linalg::multithread::{current_tract_executor, Executor};
    match current_tract_executor() {
        Executor::MultiThread(pool) if panels > 1 => {
            // A few tasks per thread: even shares when panels don't divide evenly.
            let tasks = (pool.current_num_threads() * 4).min(panels);
            let xq = &xq;
            // in_place_scope: this thread spawns the tasks straight into the pool
            // and waits; `pool.scope` would first move the spawning itself into a
            // worker (one more wake-up per product). Measured on the int8 ViT-B/32,
            // 2 threads: 5-15% faster than `scope`, and than this thread running
            // one of two equal shares itself (no balancing then).
            pool.in_place_scope(|s| {
                for t in 0..tasks {
                    let range = panels * t / tasks..panels * (t + 1) / tasks;
                    s.spawn(move |_| run_panels(kernel, xq, w, range, segments));
                }
            });
        }
        _ => run_panels(kernel, &xq, w, 0..panels, segments),
    }
}

/// Symmetric per-row int8 quantization of a weight matrix ([n, k] f32): the int8
/// values and one scale per row. What owlet-quantize stores for each channel.
pub fn quantize_weights(w: &[f32], n: usize, k: usize) -> (Vec<i8>, Vec<f32>) {
    let xq = quantize_rows(w, n, k, k.max(1), 1, 0, XScale::PerRowSymmetric);
    let mut q = Vec::with_capacity(n * k);
    for r in 0..n {
        q.extend_from_slice(&xq.data[r * xq.kp..r * xq.kp + k]);
    }
    (q, xq.scales)
}
