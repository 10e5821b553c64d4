//! The int8 linear layer as it is written into a bundle's ONNX graphs: the op that
//! owlet-quantize writes and owlet-runtime reads. Both sides name it from here, so
//! the graph format has one definition.

/// The ONNX domain owlet's ops are written under.
pub const DOMAIN: &str = "owlet";

/// The ONNX op type of owlet's int8 linear layer (in [`DOMAIN`]): inputs X, W (int8,
/// [N, K]), W_scale ([N], one per output channel) and an optional bias B ([N]).
pub const OP_TYPE: &str = "OwletMatMulInt8";

/// The ONNX attribute that holds a static activation scale (owlet-quantize
/// `--static-activations`); without it, each row of X is quantized on its own.
pub const X_SCALE_ATTR: &str = "x_scale";
