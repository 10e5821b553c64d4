//! int8 weights for an ONNX graph, in the form owlet-runtime executes fast.
//!
//! - Every `MatMul(X, W)` with a constant float W [K, N] (a linear layer) becomes
//!   `owlet.OwletMatMulInt8(X, Wq, W_scale[, B])` (runtime/src/ops/qmatmul.rs): Wq is
//!   Wᵀ in int8, symmetric, one scale per output channel; a following `Add` of a
//!   constant [N] bias is folded in. X is quantized per row at run time (scale and
//!   zero point from the row's range), or with
//!   the `x_scale` attribute static calibration found (calibrate.rs).
//! - Every `Gather` from a large constant table (token embeddings) gathers int8
//!   rows and their per-row scales instead: `Cast(Gather(Tq, ids)) * Gather(S, ids)`,
//!   plain ONNX ops.
//! - Layers kept in float by name (`keep_float`: the final projections and the LM
//!   head by default) and the remaining large float weights (patch embedding,
//!   position tables) are stored in fp16 like `--to fp16` does.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use owlet_formats::int8_op::{DOMAIN, OP_TYPE, X_SCALE_ATTR};
use owlet_kernels::int8::quantize_weights;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::{AttributeProto, GraphProto, NodeProto, OperatorSetIdProto, TensorProto};

use crate::measures::ActivationMax;

use crate::fp16::{self, float_values_in, FLOAT};
use crate::{Error, Result};

/// ONNX TensorProto.DataType INT8.
const INT8: i32 = 3;
/// Linear layers smaller than this stay float (nothing to gain).
const MIN_MATMUL_ELEMENTS: usize = 1024;
/// Gather tables smaller than this stay float.
const MIN_TABLE_ELEMENTS: usize = 65536;

/// Layers kept in float unless told otherwise: the last projection into the
/// shared embedding space (CLIP) and into the language model (BLIP-2), where an
/// error moves every score at once; small layers, so float costs little. The LM
/// head is quantized: it is the largest layer of a decoder step (OPT-125m: 38.6M
/// of its 124M weights), int8 made the step 1.5x faster (6.9 -> 4.7 ms, 2 threads)
/// and the demo's captions agreed with fp32's as often (99.9% of tokens on the 200
/// held-out frames, float head or int8). The accuracy report measures what
/// quantizing any of them costs (`--keep-float NAME` / `none`).
pub const DEFAULT_KEEP_FLOAT: &[&str] =
    &["visual_projection", "text_projection", "language_projection"];

/// What the conversion of one graph did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Int8Stats {
    /// Linear layers now int8.
    pub quantized: usize,
    /// Of those, how many took their bias along.
    pub with_bias: usize,
    /// Of those, how many take a static activation scale (`x_scale`).
    pub static_scales: usize,
    /// Embedding tables now int8.
    pub tables: usize,
    /// Linear layers kept in float by name, by node name.
    pub kept_float: Vec<String>,
    /// Other float weights stored in fp16.
    pub fp16: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// The external data files the input graph read (`onnx_file`).
    pub external_files: std::collections::BTreeSet<String>,
}

/// The `keep_float` patterns that apply to the graph of manifest section `section`:
/// `NAME` applies to every graph, `SECTION:NAME` (SECTION one of vision, text,
/// decoder) only to that one, as NAME. The layers owlet-quantize keeps for their
/// error are named so: node names repeat across graphs (a decoder's `/fc1/MatMul`
/// is part of every vision layer's name).
pub fn keep_float_for(section: &str, patterns: &[String]) -> Vec<String> {
    patterns
        .iter()
        .filter_map(|p| match p.split_once(':') {
            Some((s, name)) if GRAPH_SECTIONS.contains(&s) => {
                (s == section).then(|| name.to_string())
            }
            _ => Some(p.clone()),
        })
        .collect()
}

/// The manifest sections that name graphs.
const GRAPH_SECTIONS: [&str; 3] = ["vision", "text", "decoder"];

fn matches_any(names: &[&str], patterns: &[String]) -> bool {
    names.iter().any(|n| patterns.iter().any(|p| !p.is_empty() && n.contains(p.as_str())))
}

fn tensor_f32(name: String, dims: Vec<i64>, values: &[f32]) -> TensorProto {
    TensorProto {
        name,
        dims,
        data_type: FLOAT,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn tensor_i8(name: String, dims: Vec<i64>, values: &[i8]) -> TensorProto {
    TensorProto {
        name,
        dims,
        data_type: INT8,
        raw_data: values.iter().map(|v| *v as u8).collect(),
        ..Default::default()
    }
}

/// The graph's initializers by name.
struct Initializers<'g> {
    graph: &'g GraphProto,
    index: HashMap<String, usize>,
    /// Exporters dedupe equal constants (all-zero biases of a fresh model) behind
    /// Identity nodes: output -> input, followed to the initializer.
    identity: HashMap<&'g str, &'g str>,
}

/// What int8 does with a `MatMul`.
enum Linear<'g> {
    /// Not a linear layer (no constant 2-D float weight, or a tiny one).
    No,
    /// A linear layer that `keep_float` names.
    KeptFloat,
    /// A linear layer to quantize, and its weight [K, N].
    Int8(&'g TensorProto),
}

impl<'g> Initializers<'g> {
    fn of(graph: &'g GraphProto) -> Initializers<'g> {
        let index =
            graph.initializer.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        let identity = graph
            .node
            .iter()
            .filter(|n| n.op_type == "Identity" && n.input.len() == 1 && n.output.len() == 1)
            .map(|n| (n.output[0].as_str(), n.input[0].as_str()))
            .collect();
        Initializers { graph, index, identity }
    }

    /// The float initializer `name` stands for, through Identity nodes.
    fn float(&self, name: &str) -> Option<&'g TensorProto> {
        let mut name = name;
        for _ in 0..8 {
            match self.identity.get(name) {
                Some(src) => name = src,
                None => break,
            }
        }
        let graph = self.graph;
        self.index.get(name).map(|&i| &graph.initializer[i]).filter(|t| t.data_type == FLOAT)
    }

    fn linear_weight(&self, node: &NodeProto, keep_float: &[String]) -> Linear<'g> {
        if node.op_type != "MatMul" || node.input.len() != 2 {
            return Linear::No;
        }
        match self.float(&node.input[1]) {
            Some(w) if w.dims.len() == 2 && w.dims[0] * w.dims[1] >= MIN_MATMUL_ELEMENTS as i64 => {
                if matches_any(&[&node.name, &node.input[1]], keep_float) {
                    Linear::KeptFloat
                } else {
                    Linear::Int8(w)
                }
            }
            _ => Linear::No,
        }
    }
}

/// The inputs X of the linear layers `convert_file` quantizes (same `keep_float`),
/// once each (q, k and v read the same X): what static calibration measures.
pub fn linear_inputs(path: &Path, keep_float: &[String]) -> Result<Vec<String>> {
    let (model, _, _) = crate::onnx_file::read_model_lazily(path)?;
    let graph = model.graph.as_ref().expect("read_model checked the graph");
    let inits = Initializers::of(graph);
    let mut seen = std::collections::HashSet::new();
    Ok(graph
        .node
        .iter()
        .filter(|node| matches!(inits.linear_weight(node, keep_float), Linear::Int8(_)))
        .map(|node| node.input[0].clone())
        .filter(|x| seen.insert(x.clone()))
        .collect())
}

/// A linear layer `convert_file` quantizes, as the fp32 graph has it.
#[derive(Debug, Clone)]
pub struct LinearLayer {
    /// The MatMul node's name.
    pub node: String,
    /// The name of its weight (an initializer).
    pub weight: String,
    /// The name of its input X.
    pub input: String,
    /// The name of its output, X·W (the bias, if any, is added after).
    pub output: String,
    pub k: usize,
    pub n: usize,
}

/// The linear layers `convert_file` quantizes (same `keep_float`), in graph order,
/// each with what `weights` makes of its W (transposed to [N, K], one row per
/// output channel, f32): one layer's f32 weights at a time, so that a decoder of
/// billions of weights is never held in f32 twice.
pub fn linear_layers<T>(
    path: &Path,
    keep_float: &[String],
    mut weights: impl FnMut(&LinearLayer, Vec<f32>) -> T,
) -> Result<Vec<(LinearLayer, T)>> {
    let (model, _, _) = crate::onnx_file::read_model_lazily(path)?;
    let graph = model.graph.as_ref().expect("read_model checked the graph");
    let inits = Initializers::of(graph);
    let mut layers = Vec::new();
    for node in &graph.node {
        if let Linear::Int8(w) = inits.linear_weight(node, keep_float) {
            let (k, n) = (w.dims[0] as usize, w.dims[1] as usize);
            let values = float_values_in(w, path)?;
            let layer = LinearLayer {
                node: node.name.clone(),
                weight: w.name.clone(),
                input: node.input[0].clone(),
                output: node.output[0].clone(),
                k,
                n,
            };
            let t = weights(&layer, transpose_kn(&values, k, n));
            layers.push((layer, t));
        }
    }
    Ok(layers)
}

/// [K, N] -> [N, K]: one row per output channel.
fn transpose_kn(values: &[f32], k: usize, n: usize) -> Vec<f32> {
    let mut wt = vec![0f32; n * k];
    for kk in 0..k {
        for nn in 0..n {
            wt[nn * k + kk] = values[kk * n + nn];
        }
    }
    wt
}

/// Read `input`, quantize it as above, write `output`. `x_max` (static
/// calibration, calibrate.rs): the largest |X| of each layer's input by name, which
/// becomes its `x_scale`. `on_tensor` ticks once per node looked at.
pub fn convert_file(
    input: &Path,
    output: &Path,
    keep_float: &[String],
    x_max: Option<&ActivationMax>,
    on_tensor: &mut dyn FnMut(),
) -> Result<Int8Stats> {
    // External data stays on disk until a layer is quantized: one layer's floats at a
    // time (OPT-2.7B's decoder is 10.6 GB of them).
    let (mut model, bytes_before, external_files) = crate::onnx_file::read_model_lazily(input)?;
    let graph = model.graph.as_mut().expect("read_model checked the graph");
    if graph.node.iter().any(|n| n.op_type == OP_TYPE) {
        return Err(Error::Graph(
            input.to_path_buf(),
            "this graph is already int8 (it has OwletMatMulInt8 nodes)".into(),
        ));
    }
    let mut stats = Int8Stats { bytes_before, external_files, ..Default::default() };
    let view = GraphView::of(graph, input);
    let mut plan = Plan::new(graph.node.len());
    for (ix, node) in graph.node.iter().enumerate() {
        on_tensor();
        match node.op_type.as_str() {
            "MatMul" => plan.linear(&view, &mut stats, ix, node, keep_float, x_max)?,
            "Gather" if node.input.len() == 2 => {
                plan.table(&view, &mut stats, ix, node, keep_float)?
            }
            _ => {}
        }
    }
    let init_names: HashSet<String> = view.inits.index.keys().cloned().collect();
    let graph_outputs = view.outputs;
    plan.apply(graph, &init_names, &graph_outputs);
    if !model.opset_import.iter().any(|o| o.domain == DOMAIN) {
        model.opset_import.push(OperatorSetIdProto { domain: DOMAIN.into(), version: 1 });
    }
    // What is left of the float weights (biases, norms, positions) is small: in now,
    // for the fp16 pass and the writer.
    crate::onnx_file::inline_external_data(&mut model, input)?;
    // What stays float and is large goes to fp16 storage; the int8 layers' scales
    // and biases stay f32 (OwletMatMulInt8 takes them as initializers).
    let keep: HashSet<String> = model
        .graph
        .iter()
        .flat_map(|g| g.node.iter())
        .filter(|n| n.op_type == OP_TYPE)
        .flat_map(|n| n.input.iter().skip(1).cloned())
        .chain(plan.done_tables.values().map(|(_, scales)| scales.clone()))
        .collect();
    stats.fp16 = fp16::convert_model(&mut model, input, &keep, &mut || {})?.converted;

    stats.bytes_after = crate::write_model(model, output)?;
    Ok(stats)
}

/// The fp32 graph as the conversion reads it: its initializers, who reads each
/// tensor, and its outputs.
struct GraphView<'g> {
    graph: &'g GraphProto,
    inits: Initializers<'g>,
    consumers: HashMap<String, Vec<usize>>,
    outputs: Vec<String>,
    path: &'g Path,
}

impl<'g> GraphView<'g> {
    fn of(graph: &'g GraphProto, path: &'g Path) -> GraphView<'g> {
        let mut consumers: HashMap<String, Vec<usize>> = HashMap::new();
        for (ix, n) in graph.node.iter().enumerate() {
            for i in &n.input {
                consumers.entry(i.clone()).or_default().push(ix);
            }
        }
        let outputs = graph.output.iter().map(|o| o.name.clone()).collect();
        GraphView { graph, inits: Initializers::of(graph), consumers, outputs, path }
    }

    /// `Add(Y, bias)` right after a layer of width `n`, when Y feeds only that Add,
    /// is no graph output and the bias is a constant [n]: (the Add's index, the bias).
    fn bias_add(&self, y: &str, n: usize) -> Option<(usize, &'g TensorProto)> {
        let [add_ix] = self.consumers.get(y).map(Vec::as_slice).unwrap_or(&[]) else {
            return None;
        };
        let add = &self.graph.node[*add_ix];
        if add.op_type != "Add" || add.input.len() != 2 || self.outputs.iter().any(|o| o == y) {
            return None;
        }
        let other = add.input.iter().find(|i| *i != y)?;
        let bias = self.inits.float(other).filter(|b| b.dims == [n as i64])?;
        Some((*add_ix, bias))
    }
}

/// What the pass over the nodes decided: new initializers, nodes replaced and
/// removed; `apply` writes it into the graph.
struct Plan {
    new_inits: Vec<TensorProto>,
    removed_nodes: Vec<bool>,
    replaced: Vec<(usize, Vec<NodeProto>)>,
    /// One quantized copy per weight, however many nodes share it.
    done_weights: HashMap<String, (String, String)>,
    done_tables: HashMap<String, (String, String)>,
}

impl Plan {
    fn new(nodes: usize) -> Plan {
        Plan {
            new_inits: Vec::new(),
            removed_nodes: vec![false; nodes],
            replaced: Vec::new(),
            done_weights: HashMap::new(),
            done_tables: HashMap::new(),
        }
    }

    /// A `MatMul` with a constant weight becomes `OwletMatMulInt8`, taking the bias
    /// `Add` after it along.
    fn linear(
        &mut self,
        view: &GraphView,
        stats: &mut Int8Stats,
        ix: usize,
        node: &NodeProto,
        keep_float: &[String],
        x_max: Option<&ActivationMax>,
    ) -> Result<()> {
        let w = match view.inits.linear_weight(node, keep_float) {
            Linear::No => return Ok(()),
            Linear::KeptFloat => {
                stats.kept_float.push(node.name.clone());
                return Ok(());
            }
            Linear::Int8(w) => w,
        };
        let (k, n) = (w.dims[0] as usize, w.dims[1] as usize);
        let (wq_name, scale_name) = match self.done_weights.get(&w.name) {
            Some(names) => names.clone(),
            None => {
                let values = float_values_in(w, view.path)?;
                let (q, scales) = quantize_weights(&transpose_kn(&values, k, n), n, k);
                // `_nk`: transposed, so never the same tensor as a Gather table's `.int8`.
                let names = (format!("{}.int8_nk", w.name), format!("{}.scale_n", w.name));
                self.new_inits.push(tensor_i8(names.0.clone(), vec![n as i64, k as i64], &q));
                self.new_inits.push(tensor_f32(names.1.clone(), vec![n as i64], &scales));
                self.done_weights.insert(w.name.clone(), names.clone());
                names
            }
        };
        let mut inputs = vec![node.input[0].clone(), wq_name, scale_name];
        let mut output = node.output[0].clone();
        if let Some((add_ix, bias)) = view.bias_add(&output, n) {
            inputs.push(bias.name.clone());
            output = view.graph.node[add_ix].output[0].clone();
            self.removed_nodes[add_ix] = true;
            stats.with_bias += 1;
        }
        // A static scale where calibration saw this input non-zero; else the layer
        // keeps per-row scales.
        let x_max = x_max
            .and_then(|m| m.get(&node.input[0]))
            .copied()
            .filter(|m| *m > 0.0 && m.is_finite());
        let attribute = x_max
            .map(|max| AttributeProto {
                name: X_SCALE_ATTR.into(),
                r#type: AttributeType::Float as i32,
                f: max / 127.0,
                ..Default::default()
            })
            .into_iter()
            .collect();
        stats.static_scales += x_max.is_some() as usize;
        self.replaced.push((
            ix,
            vec![NodeProto {
                name: node.name.clone(),
                op_type: OP_TYPE.into(),
                domain: DOMAIN.into(),
                input: inputs,
                output: vec![output],
                attribute,
                ..Default::default()
            }],
        ));
        stats.quantized += 1;
        Ok(())
    }

    /// A `Gather` from a large constant table (token embeddings) reads int8 rows
    /// and their scales instead, dequantized after the gather.
    fn table(
        &mut self,
        view: &GraphView,
        stats: &mut Int8Stats,
        ix: usize,
        node: &NodeProto,
        keep_float: &[String],
    ) -> Result<()> {
        let Some(t) = view.inits.float(&node.input[0]) else { return Ok(()) };
        let axis = node.attribute.iter().find(|a| a.name == "axis").map(|a| a.i).unwrap_or(0);
        if t.dims.len() != 2 || axis != 0 || (t.dims[0] * t.dims[1]) < MIN_TABLE_ELEMENTS as i64 {
            return Ok(());
        }
        if matches_any(&[&node.name, &node.input[0]], keep_float) {
            return Ok(());
        }
        let (tq_name, scale_name) = match self.done_tables.get(&t.name) {
            Some(names) => names.clone(),
            None => {
                let (rows, width) = (t.dims[0] as usize, t.dims[1] as usize);
                let values = float_values_in(t, view.path)?;
                let (q, scales) = quantize_weights(&values, rows, width);
                let names = (format!("{}.int8", t.name), format!("{}.row_scale", t.name));
                self.new_inits.push(tensor_i8(names.0.clone(), t.dims.clone(), &q));
                self.new_inits.push(tensor_f32(names.1.clone(), vec![rows as i64, 1], &scales));
                self.done_tables.insert(t.name.clone(), names.clone());
                names
            }
        };
        let (ids, out, name) = (&node.input[1], &node.output[0], &node.name);
        let axis_attr = node.attribute.iter().find(|a| a.name == "axis").cloned();
        let gather = |data: &str, output: String| NodeProto {
            name: output.clone(),
            op_type: "Gather".into(),
            input: vec![data.to_string(), ids.clone()],
            output: vec![output],
            attribute: axis_attr.iter().cloned().collect(),
            ..Default::default()
        };
        self.replaced.push((
            ix,
            vec![
                gather(&tq_name, format!("{name}.int8_rows")),
                gather(&scale_name, format!("{name}.row_scales")),
                fp16::cast_node(format!("{name}.int8_rows"), format!("{name}.f32_rows"), FLOAT),
                NodeProto {
                    name: format!("{name}.dequantize"),
                    op_type: "Mul".into(),
                    input: vec![format!("{name}.f32_rows"), format!("{name}.row_scales")],
                    output: vec![out.clone()],
                    ..Default::default()
                },
            ],
        ));
        stats.tables += 1;
        Ok(())
    }

    /// Rebuilds the node list in order (replacements in place, folded Adds dropped),
    /// drops the float originals nothing reads any more and adds the new tensors.
    fn apply(&mut self, graph: &mut GraphProto, init_names: &HashSet<String>, outputs: &[String]) {
        let mut replacements: HashMap<usize, Vec<NodeProto>> =
            std::mem::take(&mut self.replaced).into_iter().collect();
        let old = std::mem::take(&mut graph.node);
        for (ix, node) in old.into_iter().enumerate() {
            if self.removed_nodes[ix] {
                continue;
            }
            match replacements.remove(&ix) {
                Some(nodes) => graph.node.extend(nodes),
                None => graph.node.push(node),
            }
        }
        let used: HashSet<String> =
            graph.node.iter().flat_map(|n| n.input.iter().cloned()).collect();
        let outputs: HashSet<&String> = outputs.iter().collect();
        graph.initializer.retain(|t| used.contains(&t.name) || outputs.contains(&t.name));
        graph.input.retain(|i| !init_names.contains(&i.name) || used.contains(&i.name));
        graph.initializer.extend(std::mem::take(&mut self.new_inits));
    }
}

#[cfg(test)]
mod keep_float_tests {
    use super::keep_float_for;

    #[test]
    fn a_graph_prefix_confines_a_pattern_to_that_graph() {
        let p: Vec<String> = ["lm_head", "decoder:/fc1/MatMul", "vision:/q_proj", "weird:name", ""]
            .map(String::from)
            .to_vec();
        assert_eq!(keep_float_for("decoder", &p), ["lm_head", "/fc1/MatMul", "weird:name", ""]);
        assert_eq!(keep_float_for("vision", &p), ["lm_head", "/q_proj", "weird:name", ""]);
        assert_eq!(keep_float_for("text", &p), ["lm_head", "weird:name", ""]);
    }
}
