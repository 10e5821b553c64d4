//! fp16 storage of an ONNX graph's weights: every float initializer of at least
//! `MIN_ELEMENTS` values is stored as IEEE half (the `half` crate rounds to
//! nearest even) and turned back into f32 by a Cast node in front of the graph.
//! The file halves; owlet-runtime folds the Casts at load (tract alone leaves the
//! large ones in the plan: `f16_compute::widen_f16_constants`), so the CPU computes
//! in f32 at fp32's speed; a CPU with f16 arithmetic and an fp16 GPU plan
//! (owlet-runtime's device module) compute in f16 from it. Small tensors (biases, LayerNorm scales) stay f32: they cost
//! nothing and are the ones fp16 hurts most.

use std::collections::HashSet;
use std::path::Path;

use tract_onnx::pb::{AttributeProto, ModelProto, NodeProto, TensorProto};

use crate::{Error, Result};

/// ONNX TensorProto.DataType values (onnx.proto).
pub(crate) const FLOAT: i32 = 1;
const FLOAT16: i32 = 10;
/// ONNX AttributeProto.AttributeType INT.
const ATTR_INT: i32 = 2;
/// Tensors smaller than this stay f32.
pub const MIN_ELEMENTS: usize = 256;

/// What the conversion of one graph did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GraphStats {
    pub converted: usize,
    pub kept_f32: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// The external data files the input graph read (`onnx_file`).
    pub external_files: std::collections::BTreeSet<String>,
}

/// Read `input`, store its large float weights in fp16, write `output`.
/// `on_tensor` is called once per initializer (a progress bar's tick).
pub fn convert_file(
    input: &Path,
    output: &Path,
    on_tensor: &mut dyn FnMut(),
) -> Result<GraphStats> {
    let (mut model, bytes_before, external_files) = crate::onnx_file::read_model_and_files(input)?;
    let mut stats = convert_model(&mut model, input, &HashSet::new(), on_tensor)?;
    (stats.bytes_before, stats.external_files) = (bytes_before, external_files);
    stats.bytes_after = crate::write_model(model, output)?;
    Ok(stats)
}

/// Store `model`'s large float initializers (except those named in `keep`) in
/// fp16 behind Cast nodes. `path` names the graph in errors. Sizes are left at 0.
pub fn convert_model(
    model: &mut ModelProto,
    path: &Path,
    keep: &HashSet<String>,
    on_tensor: &mut dyn FnMut(),
) -> Result<GraphStats> {
    let Some(graph) = model.graph.as_mut() else {
        return Err(Error::Graph(path.to_path_buf(), "the ONNX model has no graph".into()));
    };
    let mut stats = GraphStats::default();
    let mut casts = Vec::new();
    for t in graph.initializer.iter_mut() {
        on_tensor();
        if t.data_type != FLOAT || keep.contains(&t.name) {
            continue;
        }
        let values = float_values(t).map_err(|why| {
            Error::Graph(path.to_path_buf(), format!("initializer {}: {why}", t.name))
        })?;
        if values.len() < MIN_ELEMENTS {
            stats.kept_f32 += 1;
            continue;
        }
        let original = std::mem::take(&mut t.name);
        t.name = format!("{original}.fp16");
        t.data_type = FLOAT16;
        t.float_data.clear();
        t.raw_data =
            values.iter().flat_map(|v| half::f16::from_f32(*v).to_bits().to_le_bytes()).collect();
        casts.push(cast_node(t.name.clone(), original, FLOAT));
        stats.converted += 1;
    }
    // An initializer also listed as a graph input (old exporters) would become a
    // real input once renamed: drop those entries.
    let renamed: HashSet<&str> = casts.iter().map(|c| c.output[0].as_str()).collect();
    graph.input.retain(|i| !renamed.contains(i.name.as_str()));
    casts.append(&mut graph.node);
    graph.node = casts;
    Ok(stats)
}

/// `output = Cast(input, to)`, named after its output.
pub fn cast_node(input: String, output: String, to: i32) -> NodeProto {
    NodeProto {
        input: vec![input],
        name: format!("{output}.cast"),
        output: vec![output],
        op_type: "Cast".into(),
        attribute: vec![AttributeProto {
            name: "to".into(),
            r#type: ATTR_INT,
            i: to as i64,
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub(crate) fn float_values(t: &TensorProto) -> std::result::Result<Vec<f32>, String> {
    float_values_from(t, &t.raw_data)
}

/// `float_values` of a tensor that may keep its bytes in external data (of the graph
/// at `graph`), read now.
pub(crate) fn float_values_in(t: &TensorProto, graph: &std::path::Path) -> Result<Vec<f32>> {
    let raw = crate::onnx_file::raw_bytes(t, graph)?;
    float_values_from(t, &raw).map_err(|why| {
        crate::Error::Graph(graph.to_path_buf(), format!("initializer {}: {why}", t.name))
    })
}

fn float_values_from(t: &TensorProto, raw: &[u8]) -> std::result::Result<Vec<f32>, String> {
    let n: i64 = t.dims.iter().product();
    let values: Vec<f32> = if !raw.is_empty() {
        if !raw.len().is_multiple_of(4) {
            return Err(format!("{} raw bytes is not a whole number of f32", raw.len()));
        }
        raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    } else {
        t.float_data.clone()
    };
    if values.len() as i64 != n {
        return Err(format!("{} values for dims {:?}", values.len(), t.dims));
    }
    Ok(values)
}
