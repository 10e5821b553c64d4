//! `OwletBatchedMatMul`: a product of two activations with batch axes (attention's
//! `Q · Kᵀ` and `P · V`, one per head), as a rewrite of tract's `EinSum` before
//! optimisation.
//!
//! tract turns each into a packing op per operand and a matmul that walks the
//! heads one after another, each head too small for its threading gate (77 x 77
//! outputs, 64 deep): measured on the int8 CLIP text graph at batch 1, 1.7 ms of
//! a 9 ms run on one thread, while onnxruntime spends 0.5 ms on both threads.
//! This op gives each head (each batch index) to a task on the pool, packs the
//! head's operands into small dense blocks and runs owlet's small-GEMM kernel
//! (crate::kernels::small_gemm).
//!
//! The rewrite happens only where that kernel is hand-written (AVX-512 or AVX2;
//! `small_gemm::beats_tract`). It takes any `EinSum` of two non-constant f32
//! inputs whose axes are: one `m` (in A and C), one `n` (in B and C), one
//! contracted `k` (in A and B), and any number of batch axes in all three with
//! equal sizes, in any order. Products with a constant operand (the linear
//! layers) stay tract's (or owlet's int8 op).

use tract_onnx::prelude::*;
use tract_onnx::tract_core::axes::AxesMapping;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_hir::internal::*;

use crate::kernels::small_gemm::{COLS, FAMILY, ROWS};

pub const OP_NAME: &str = "OwletBatchedMatMul";

/// Where each role's axis sits in A, B and C.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BatchedMatMul {
    a_m: usize,
    a_k: usize,
    b_k: usize,
    b_n: usize,
    c_m: usize,
    c_n: usize,
    /// (position in A, in B, in C) for each batch axis.
    batch: TVec<(usize, usize, usize)>,
}

impl BatchedMatMul {
    /// The roles of an einsum's axes, if it is a batched matmul this op runs.
    pub fn from_axes(axes: &AxesMapping) -> Option<BatchedMatMul> {
        if axes.input_count() != 2 || axes.output_count() != 1 {
            return None;
        }
        let (mut m, mut n, mut k) = (None, None, None);
        let mut batch = tvec!();
        for axis in axes.iter_all_axes() {
            let one = |v: &TVec<usize>| if v.len() <= 1 { Some(v.first().copied()) } else { None };
            let (a, b, c) = (one(&axis.inputs[0])?, one(&axis.inputs[1])?, one(&axis.outputs[0])?);
            match (a, b, c) {
                (Some(a), Some(b), Some(c)) => batch.push((a, b, c)),
                (Some(a), None, Some(c)) if m.is_none() => m = Some((a, c)),
                (None, Some(b), Some(c)) if n.is_none() => n = Some((b, c)),
                (Some(a), Some(b), None) if k.is_none() => k = Some((a, b)),
                _ => return None,
            }
        }
        let ((a_m, c_m), (b_n, c_n), (a_k, b_k)) = (m?, n?, k?);
        Some(BatchedMatMul { a_m, a_k, b_k, b_n, c_m, c_n, batch })
    }

    fn output_shape<D: Clone + Default>(&self, a: &[D], b: &[D]) -> TVec<D> {
        let mut c: TVec<D> = tvec![D::default(); self.batch.len() + 2];
        c[self.c_m] = a[self.a_m].clone();
        c[self.c_n] = b[self.b_n].clone();
        for &(pa, _, pc) in &self.batch {
            c[pc] = a[pa].clone();
        }
        c
    }
}

impl Op for BatchedMatMul {
    fn name(&self) -> StaticName {
        OP_NAME.into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{:?}, kernel {}", self, FAMILY.chosen().name)])
    }

    op_as_typed_op!();
}

/// C's base pointer, shared by tasks that write disjoint heads.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: each task writes the elements of its own batch indices only.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// `C[at + j * stride] = values[j]`.
    ///
    /// # Safety
    /// Every element written is inside C, and no other task writes it.
    unsafe fn write_run(self, at: usize, stride: usize, values: &[f32]) {
        unsafe {
            if stride == 1 {
                std::ptr::copy_nonoverlapping(values.as_ptr(), self.0.add(at), values.len());
            } else {
                for (j, &v) in values.iter().enumerate() {
                    *self.0.add(at + j * stride) = v;
                }
            }
        }
    }
}

/// One operand's layout: offset of each batch index, and the strides of its two
/// matrix axes.
struct Layout {
    offsets: Vec<usize>,
    rows: usize,
    cols: usize,
}

fn natural_strides(shape: &[usize]) -> TVec<usize> {
    let mut s: TVec<usize> = tvec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Offsets of every batch index (the batch axes' sizes `dims`, last fastest) in a
/// tensor whose batch axes have `strides`.
fn batch_offsets(dims: &[usize], strides: &[usize]) -> Vec<usize> {
    let mut offsets = vec![0usize];
    for (&d, &s) in dims.iter().zip(strides) {
        offsets = offsets.iter().flat_map(|&o| (0..d).map(move |i| o + i * s)).collect();
    }
    offsets
}

/// `dst[r * dst_stride + c] = src[off + r * rs + c * cs]` for r < rows, c < cols.
#[inline]
fn gather(
    src: &[f32],
    off: usize,
    (rs, cs): (usize, usize),
    rows: usize,
    cols: usize,
    dst: &mut [f32],
    dst_stride: usize,
) {
    for r in 0..rows {
        let d = &mut dst[r * dst_stride..r * dst_stride + cols];
        let base = off + r * rs;
        if cs == 1 {
            d.copy_from_slice(&src[base..base + cols]);
        } else if rs != 1 {
            for (c, v) in d.iter_mut().enumerate() {
                *v = src[base + c * cs];
            }
        }
    }
    if cs != 1 && rs == 1 {
        // A transpose (attention's K): read the source's contiguous runs and
        // scatter them down the small destination, which stays in L1.
        for c in 0..cols {
            let run = &src[off + c * cs..off + c * cs + rows];
            for (r, &v) in run.iter().enumerate() {
                dst[r * dst_stride + c] = v;
            }
        }
    }
}

impl EvalOp for BatchedMatMul {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (a, b) = args_2!(inputs);
        let (sa, sb) = (a.shape(), b.shape());
        let (m, k, n) = (sa[self.a_m], sa[self.a_k], sb[self.b_n]);
        if sb[self.b_k] != k {
            bail!("{OP_NAME}: contracted axis is {k} in A and {} in B", sb[self.b_k]);
        }
        if let Some(&(pa, pb, _)) = self.batch.iter().find(|&&(pa, pb, _)| sa[pa] != sb[pb]) {
            bail!("{OP_NAME}: batch axis is {} in A and {} in B", sa[pa], sb[pb]);
        }
        let sc = self.output_shape(sa, sb);
        let (ta, tb, tc) = (natural_strides(sa), natural_strides(sb), natural_strides(&sc));
        let dims: TVec<usize> = self.batch.iter().map(|&(pa, _, _)| sa[pa]).collect();
        let layout = |strides: &[usize],
                      pos: &dyn Fn(&(usize, usize, usize)) -> usize,
                      r: usize,
                      c: usize| Layout {
            offsets: batch_offsets(
                &dims,
                &self.batch.iter().map(|p| strides[pos(p)]).collect::<Vec<_>>(),
            ),
            rows: strides[r],
            cols: strides[c],
        };
        let la = layout(&ta, &|p| p.0, self.a_m, self.a_k);
        let lb = layout(&tb, &|p| p.1, self.b_k, self.b_n);
        let lc = layout(&tc, &|p| p.2, self.c_m, self.c_n);
        // SAFETY: f32 has no invalid values, and every element of C is written
        // below before anything reads it: the heads' m x n blocks tile C.
        let mut c = unsafe { Tensor::uninitialized::<f32>(&sc)? };
        let heads = la.offsets.len();
        if heads == 0 || m == 0 || n == 0 {
            return Ok(tvec!(c.into_tvalue()));
        }
        let av = a.to_plain_array_view::<f32>()?;
        let bv = b.to_plain_array_view::<f32>()?;
        let (a, b) =
            (av.as_slice().context("contiguous A")?, bv.as_slice().context("contiguous B")?);
        let mut cv = c.to_plain_array_view_mut::<f32>()?;
        let out = SharedOut(cv.as_slice_mut().context("a new tensor is contiguous")?.as_mut_ptr());
        let (mp, np) = (m.next_multiple_of(ROWS), n.next_multiple_of(COLS));
        let kernel = FAMILY.chosen().run;
        let run = |range: std::ops::Range<usize>| {
            // Padding rows of A and columns of B stay zero: their products are
            // computed and never written out.
            let (mut pa, mut pb, mut pc) =
                (vec![0f32; mp * k], vec![0f32; k * np], vec![0f32; mp * np]);
            for h in range {
                gather(a, la.offsets[h], (la.rows, la.cols), m, k, &mut pa, k);
                gather(b, lb.offsets[h], (lb.rows, lb.cols), k, n, &mut pb, np);
                kernel(&pa, &pb, &mut pc, mp, k, np);
                let base = lc.offsets[h];
                for i in 0..m {
                    let row = &pc[i * np..i * np + n];
                    // SAFETY: inside C (its shape's offsets), and head h's
                    // elements are written by this task alone.
                    unsafe { out.write_run(base + i * lc.rows, lc.cols, row) };
                }
            }
        };
        use tract_linalg::multithread::{current_tract_executor, Executor};
        match current_tract_executor() {
            // A head is ~0.4 M multiply-adds: worth a task from a few heads on.
            Executor::MultiThread(pool) if heads > 1 && heads * m * n * k >= 1 << 20 => {
                let tasks = pool.current_num_threads().min(heads);
                let run = &run;
                pool.in_place_scope(|s| {
                    for t in 0..tasks {
                        s.spawn(move |_| run(heads * t / tasks..heads * (t + 1) / tasks));
                    }
                });
            }
            _ => run(0..heads),
        }
        drop(cv);
        Ok(tvec!(c.into_tvalue()))
    }
}

impl TypedOp for BatchedMatMul {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let (a, b): (TVec<TDim>, TVec<TDim>) =
            (inputs[0].shape.to_tvec(), inputs[1].shape.to_tvec());
        Ok(tvec!(f32::fact(self.output_shape(&a, &b))))
    }

    as_op!();
}

/// The op for `node`, if it is an einsum of this kind: f32, two inputs, neither
/// a constant, batch axes of equal (symbolic) sizes.
fn candidate(model: &TypedModel, node: &TypedNode) -> TractResult<Option<BatchedMatMul>> {
    let Some(op) = node.op_as::<EinSum>() else { return Ok(None) };
    if op.operating_dt != f32::datum_type() || op.q_params.is_some() || node.inputs.len() != 2 {
        return Ok(None);
    }
    let facts = model.node_input_facts(node.id)?;
    if facts.iter().any(|f| f.konst.is_some() || f.datum_type != f32::datum_type()) {
        return Ok(None);
    }
    let Some(bmm) = BatchedMatMul::from_axes(&op.axes) else { return Ok(None) };
    if bmm.batch.iter().any(|&(pa, pb, _)| facts[0].shape[pa] != facts[1].shape[pb]) {
        return Ok(None);
    }
    Ok(Some(bmm))
}

/// Replace every such einsum of a decluttered model, where owlet's kernel beats
/// tract's path on this CPU (`small_gemm::beats_tract`). Returns how many.
pub fn rewrite(model: &mut TypedModel) -> TractResult<usize> {
    if !crate::kernels::small_gemm::beats_tract() {
        return Ok(0);
    }
    rewrite_always(model)
}

fn rewrite_always(model: &mut TypedModel) -> TractResult<usize> {
    super::replace_each(model, |model, node| {
        Ok(candidate(model, node)?.map(|op| (op, node.inputs.iter().copied().collect())))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `expr` (tract's einsum notation) of two sources shaped `a` and `b`, as a
    /// typed model.
    fn einsum_model(expr: &str, a: &[usize], b: &[usize]) -> TypedModel {
        let mut m = TypedModel::default();
        let x = m.add_source("a", f32::fact(a)).unwrap();
        let y = m.add_source("b", f32::fact(b)).unwrap();
        let axes: AxesMapping = expr.parse().unwrap();
        let z = m.wire_node("einsum", EinSum::new(axes, f32::datum_type()), &[x, y]).unwrap();
        m.select_output_outlets(&z).unwrap();
        m
    }

    fn random(shape: &[usize], seed: u32) -> Tensor {
        let mut s = seed;
        let data: Vec<f32> = (0..shape.iter().product())
            .map(|_| {
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                (s >> 8) as f32 / (1 << 24) as f32 - 0.5
            })
            .collect();
        Tensor::from_shape(shape, &data).unwrap()
    }

    #[test]
    fn attention_products_match_tracts_einsum() {
        let cases: &[(&str, &[usize], &[usize])] = &[
            ("ambk,anbk->abmn", &[2, 77, 4, 8], &[2, 77, 4, 8]), // CLIP's Q·Kᵀ, decluttered
            ("abmk,akbn->ambn", &[2, 4, 77, 77], &[2, 77, 4, 8]), // P·V
            ("ambk,anbk->abmn", &[1, 50, 12, 64], &[1, 50, 12, 64]), // ViT-B/32 sizes, batch 1
            ("mk,kn->mn", &[5, 3], &[3, 17]),
            ("bmk,bnk->bnm", &[3, 9, 33], &[3, 20, 33]),
        ];
        for (ix, &(expr, a, b)) in cases.iter().enumerate() {
            let model = einsum_model(expr, a, b);
            let mut rewritten = model.clone();
            // Whichever kernel this CPU picks, also where plans would not use it.
            assert_eq!(rewrite_always(&mut rewritten).unwrap(), 1, "{expr}");
            assert!(rewritten.nodes.iter().any(|n| n.op.name() == OP_NAME));
            let inputs: TVec<TValue> =
                tvec![random(a, ix as u32).into(), random(b, 99 + ix as u32).into()];
            let want = model.into_runnable().unwrap().run(inputs.clone()).unwrap().remove(0);
            use tract_linalg::multithread::{multithread_tract_scope, Executor};
            for threads in [1, 2] {
                let exec = if threads == 1 {
                    Executor::SingleThread
                } else {
                    Executor::multithread(threads)
                };
                let plan = rewritten.clone().into_runnable().unwrap();
                let got =
                    multithread_tract_scope(exec, || plan.run(inputs.clone())).unwrap().remove(0);
                assert_eq!(got.shape(), want.shape(), "{expr}");
                let (g, w) = (
                    got.to_plain_array_view::<f32>().unwrap(),
                    want.to_plain_array_view::<f32>().unwrap(),
                );
                for (x, y) in g.iter().zip(w.iter()) {
                    assert!((x - y).abs() < 1e-4, "{expr}, {threads} threads: {x} vs {y}");
                }
            }
        }
    }

    #[test]
    fn constant_operands_and_other_shapes_stay_tracts() {
        assert!(BatchedMatMul::from_axes(&"mk,kn->mn".parse().unwrap()).is_some());
        assert!(BatchedMatMul::from_axes(&"mk,kn->m".parse().unwrap()).is_none()); // n summed away
        assert!(BatchedMatMul::from_axes(&"mkj,kn->mn".parse().unwrap()).is_none()); // two contractions
        assert!(BatchedMatMul::from_axes(&"mk,k->m".parse().unwrap()).is_none()); // no n
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact([4, 8])).unwrap();
        let w = m.add_const("w", random(&[8, 16], 3)).unwrap();
        let z = m
            .wire_node(
                "einsum",
                EinSum::new("mk,kn->mn".parse().unwrap(), f32::datum_type()),
                &[x, w],
            )
            .unwrap();
        m.select_output_outlets(&z).unwrap();
        assert_eq!(rewrite_always(&mut m).unwrap(), 0);
    }
}
