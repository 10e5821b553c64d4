//! owlet's own graph ops: `qmatmul`, registered into tract's ONNX loader, and
//! `broadcast`, swapped into optimised plans for a slow path of tract's.
//!
//! tract looks ONNX ops up by `op_type` alone (the domain is ignored), so owlet's
//! ops carry an `Owlet` prefix in the type as well as the `owlet` domain that
//! owlet-quantize writes; no standard ONNX op can clash with them.

pub mod broadcast;
pub mod qmatmul;

/// The ONNX domain owlet's ops are written under.
pub const DOMAIN: &str = "owlet";

/// tract's ONNX loader with owlet's ops registered: what every bundle graph is
/// loaded with.
pub fn onnx() -> tract_onnx::Onnx {
    let mut onnx = tract_onnx::onnx();
    onnx.op_register.insert(qmatmul::OP_TYPE, qmatmul::onnx_builder);
    onnx
}
