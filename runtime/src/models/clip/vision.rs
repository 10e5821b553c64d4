//! CLIP's image tower: pixel_values [B,3,S,S] -> image_embeds [B,D].

use image::RgbImage;
use tract_onnx::prelude::*;

use crate::bundle::{Bundle, PreprocessSpec};
use crate::device::Placement;
use crate::engine::Graph;
use crate::error::{Error, Result};
use crate::preprocess;
use crate::similarity::Embeddings;

/// Images per graph run. Bounds peak memory on a Pi; the batch gain flattens
/// well before this (see BENCHMARKS.md).
const MAX_BATCH: usize = 8;

pub struct VisionEncoder {
    graph: Graph,
    spec: PreprocessSpec,
    dim: usize,
}

impl VisionEncoder {
    pub fn load(bundle: &Bundle, on: Placement) -> Result<VisionEncoder> {
        let v = &bundle.manifest.vision;
        let graph = crate::models::load_vision(bundle, on, 2)?;
        Ok(VisionEncoder { graph, spec: v.preprocess.clone(), dim: v.embed_dim })
    }

    pub fn device(&self) -> crate::device::Device {
        self.graph.device()
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn preprocess_spec(&self) -> &PreprocessSpec {
        &self.spec
    }

    /// Normalised embeddings, one row per image.
    pub fn embed(&self, images: &[RgbImage]) -> Result<Embeddings> {
        let mut data = Vec::with_capacity(images.len() * self.dim);
        for chunk in images.chunks(MAX_BATCH) {
            let side = self.spec.crop_size as usize;
            let mut pixels = Vec::with_capacity(chunk.len() * 3 * side * side);
            for img in chunk {
                preprocess::pixel_values_into(&self.spec, img, &mut pixels);
            }
            data.extend(self.run_pixels(pixels, chunk.len())?);
        }
        let mut e = Embeddings::new(self.dim, data);
        e.normalize();
        Ok(e)
    }

    /// Raw (unnormalised) image_embeds for already preprocessed pixel values.
    pub fn run_pixels(&self, pixels: Vec<f32>, batch: usize) -> Result<Vec<f32>> {
        let input = preprocess::pixel_tensor(&self.spec, &pixels, batch)
            .map_err(|e| Error::Inference { graph: "vision", reason: format!("{e:#}") })?;
        let out = self.graph.run_batch_split("vision", tvec!(input.into()))?;
        check_output("vision", &out, batch, self.dim)
    }
}

pub(super) fn check_output(
    graph: &'static str,
    out: &Tensor,
    batch: usize,
    dim: usize,
) -> Result<Vec<f32>> {
    if out.shape() != [batch, dim] {
        return Err(Error::Inference {
            graph,
            reason: format!("output shape {:?}, expected [{batch}, {dim}]", out.shape()),
        });
    }
    let v = out
        .to_plain_array_view::<f32>()
        .map_err(|e| Error::Inference { graph, reason: format!("{e:#}") })?;
    Ok(v.iter().cloned().collect())
}
