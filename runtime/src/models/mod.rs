//! Model pipelines built on bundles: what each model family does with its graphs.

// The two families' modules are the crate's insides (their encoders, the decoder
// session); what callers need is re-exported here.
#[cfg(feature = "internals")]
pub mod blip2;
#[cfg(not(feature = "internals"))]
pub(crate) mod blip2;
#[cfg(feature = "internals")]
pub mod clip;
#[cfg(not(feature = "internals"))]
pub(crate) mod clip;

pub use crate::generate::{GenerationConfig, Strategy};
pub use blip2::{Blip2, Chat, DecoderStats, Generated, ImageQueries, TextStream};
pub use clip::{Classification, Clip, LabelSet};

use tract_onnx::prelude::*;

use crate::bundle::Bundle;
use crate::device::Placement;
use crate::engine::{Graph, InputSpec};
use crate::error::{Error, Result};

/// The bundle's vision graph, `pixel_values` [B, 3, S, S] in and a rank
/// `output_rank` tensor out (CLIP's embeddings [B, D]; BLIP-2's queries [B, Q, D]
/// after its vision tower, Q-Former and projection), its output as wide as
/// `vision.embed_dim` says.
pub(crate) fn load_vision(bundle: &Bundle, on: Placement, output_rank: usize) -> Result<Graph> {
    let v = &bundle.manifest.vision;
    let path = bundle.path_of(&v.file);
    let graph = Graph::load(
        &path,
        "vision",
        &[InputSpec { name: "pixel_values", dtype: f32::datum_type(), rank: 4 }],
        output_rank,
        on.for_graph("vision", v.precision)?,
    )?;
    match graph.output_width() {
        Some(w) if w != v.embed_dim => Err(Error::Graph {
            path,
            reason: format!(
                "output width {w} differs from vision.embed_dim {} in owlet.toml",
                v.embed_dim
            ),
        }),
        _ => Ok(graph),
    }
}
