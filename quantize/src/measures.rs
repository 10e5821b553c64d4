//! What calibration measures and the report shows, shared by `calibrate` (which
//! measures), `int8` (which writes static scales) and `report` (which prints), so
//! that none of those three needs another's module for a type.

use std::collections::HashMap;

/// Largest |x| seen, by the name of the tensor X of each `MatMul(X, W)`.
pub type ActivationMax = HashMap<String, f32>;

/// One int8 layer's error on the calibration set.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LayerError {
    /// The graph's manifest section: "vision", "text" or "decoder".
    pub graph: &'static str,
    /// The layer's ONNX node name.
    pub layer: String,
    /// Its weight's name.
    pub weight: String,
    /// ‖X·W_int8 − X·W‖ / ‖X·W‖ over every row the set produced, with X the fp32
    /// graph's own input to the layer, quantized as the runtime does (this CPU's
    /// kernel, per-row scales): the layer's error alone, not what reaches it.
    pub relative_error: f64,
}

impl LayerError {
    /// The `--keep-float` name that keeps this layer, and no other, float:
    /// `GRAPH:NAME` (`int8::keep_float_for`), NAME the node's name, or its
    /// weight's where the node has none.
    pub fn keep_float_name(&self) -> String {
        format!("{}:{}", self.graph, if self.layer.is_empty() { &self.weight } else { &self.layer })
    }
}

/// Images the per-layer errors are measured on (each layer's input is multiplied
/// again in int8: more images cost time and say little more).
pub const LAYER_ERROR_IMAGES: usize = 16;

/// The prompt each label becomes for the zero-shot agreement (and for static
/// calibration of the text graph).
pub const LABEL_TEMPLATE: &str = "a photo of a {}";
