//! ONNX files into tract's model with the weights held once.
//!
//! tract's own `model_for_path` maps the file, decodes the protobuf (every
//! initializer's bytes copied out of the map into the message), then builds each
//! tensor from those bytes (a second copy) while the message is still alive: a graph
//! with inline weights peaks at about three times its file in resident memory
//! (the mapped pages count while they are mapped) before tract has planned anything.
//!
//! Here the file is decoded from a small read buffer (`FileBuf`), so only the
//! message's own copy is resident; each large initializer's bytes are then moved out
//! of the message into a store that tract reads through its `ModelDataResolver`
//! hook, as if they were external data: tract takes each one once, builds the tensor
//! and drops them. At the end the message is a skeleton and every weight exists once,
//! as a tract tensor. Graphs whose weights are already external data (past 2 GB) go
//! through tract's own resolver, one tensor at a time.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Buf;
use prost::Message;
use tract_onnx::data_resolver::{MmapDataResolver, ModelDataResolver};
use tract_onnx::pb::{tensor_proto::DataLocation, ModelProto, StringStringEntryProto};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

/// Initializers at least this large are moved rather than copied (small ones,
/// shapes and scalars, are not worth the bookkeeping).
const MOVE_AT_LEAST: usize = 64 << 10;

/// Reads the ONNX graph at `path` with `framework`'s ops, as `model_for_path` would.
pub fn read_inference_model(
    framework: &tract_onnx::Onnx,
    path: &Path,
) -> TractResult<InferenceModel> {
    let mut proto = decode(path)?;
    let canonical = path.canonicalize().with_context(|| format!("Resolving {path:?}"))?;
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{path:?} has no UTF-8 file name"))?
        .to_string();
    let store = Arc::new(MovedInitializers { graph: canonical, tensors: Mutex::default() });
    if let Some(graph) = proto.graph.as_mut() {
        let mut tensors = store.tensors.lock().expect("not shared yet");
        for (key, init) in graph.initializer.iter_mut().enumerate() {
            if init.raw_data.len() < MOVE_AT_LEAST {
                continue;
            }
            let bytes = std::mem::take(&mut init.raw_data);
            let entry =
                |key: &str, value: String| StringStringEntryProto { key: key.into(), value };
            init.external_data = vec![
                entry("location", file_name.clone()),
                entry("offset", key.to_string()),
                entry("length", bytes.len().to_string()),
            ];
            init.data_location = Some(DataLocation::External as i32);
            tensors.insert(key, bytes);
        }
    }
    let mut framework = framework.clone();
    framework.provider = store;
    let dir = path.parent().and_then(|d| d.to_str());
    let parsed = framework.parse(&proto, dir)?;
    if !parsed.unresolved_inputs.is_empty() {
        bail!("Could not resolve inputs at top-level: {:?}", parsed.unresolved_inputs)
    }
    Ok(parsed.model)
}

/// The bytes moved out of the message, keyed by the initializer's index (written
/// as its `offset`); anything else is real external data, for tract's resolver.
struct MovedInitializers {
    graph: PathBuf,
    tensors: Mutex<HashMap<usize, Vec<u8>>>,
}

impl ModelDataResolver for MovedInitializers {
    fn read_bytes_from_path(
        &self,
        buf: &mut Vec<u8>,
        p: &Path,
        offset: usize,
        length: Option<usize>,
    ) -> TractResult<()> {
        if p == self.graph {
            let moved = self.tensors.lock().map_err(|_| format_err!("poisoned"))?.remove(&offset);
            if let Some(bytes) = moved {
                ensure!(length.is_none_or(|l| l == bytes.len()), "initializer length changed");
                *buf = bytes;
                return Ok(());
            }
        }
        MmapDataResolver.read_bytes_from_path(buf, p, offset, length)
    }
}

/// Decodes the message from the file through a small buffer: the file's pages are
/// never all resident beside the message's copy of them.
fn decode(path: &Path) -> TractResult<ModelProto> {
    let file = File::open(path).with_context(|| format!("Opening {path:?}"))?;
    let mut buf = FileBuf::new(file)?;
    let decoded = ModelProto::decode(&mut buf);
    if let Some(e) = buf.error.take() {
        return Err(e).with_context(|| format!("Reading {path:?}"));
    }
    decoded.with_context(|| format!("Decoding {path:?} as an ONNX model"))
}

/// A `Buf` over a file, 1 MiB at a time. A read error ends the data (prost then
/// fails on the short message) and is reported by `decode` instead.
struct FileBuf {
    file: File,
    chunk: Vec<u8>,
    pos: usize,
    remaining: usize,
    error: Option<std::io::Error>,
}

const CHUNK: usize = 1 << 20;

impl FileBuf {
    fn new(file: File) -> TractResult<FileBuf> {
        let remaining = usize::try_from(file.metadata()?.len())?;
        let mut b =
            FileBuf { file, chunk: Vec::with_capacity(CHUNK), pos: 0, remaining, error: None };
        b.refill();
        Ok(b)
    }

    /// Reads the next chunk once the current one is used up.
    fn refill(&mut self) {
        let want = CHUNK.min(self.remaining);
        self.chunk.resize(want, 0);
        self.pos = 0;
        if let Err(e) = self.file.read_exact(&mut self.chunk) {
            self.error = Some(e);
            self.chunk.clear();
            self.remaining = 0;
        }
    }
}

impl Buf for FileBuf {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        &self.chunk[self.pos..]
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.remaining, "advance past the end of the file");
        while cnt > 0 {
            let step = cnt.min(self.chunk.len() - self.pos);
            self.pos += step;
            self.remaining -= step;
            cnt -= step;
            if self.pos == self.chunk.len() && self.remaining > 0 {
                self.refill();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle_graph(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models").join(name)
    }

    /// The same model as tract's own loader gives: same nodes, same constants.
    #[test]
    fn reads_the_same_model_as_tract() {
        for graph in ["clip-test/vision.onnx", "clip-test/text.onnx", "blip2-test/decoder.onnx"] {
            let path = bundle_graph(graph);
            let onnx = tract_onnx::onnx();
            let ours = read_inference_model(&onnx, &path).unwrap();
            let theirs = onnx.model_for_path(&path).unwrap();
            assert_eq!(ours.nodes.len(), theirs.nodes.len(), "{graph}");
            for (a, b) in ours.nodes.iter().zip(&theirs.nodes) {
                assert_eq!(a.name, b.name, "{graph}");
                assert_eq!(format!("{:?}", a.op), format!("{:?}", b.op), "{graph}: {}", a.name);
            }
        }
    }

    #[test]
    fn a_chunk_boundary_inside_a_field_decodes() {
        // Advance across several chunks at once, as copy_to_bytes does for a
        // tensor larger than the buffer.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bytes");
        let data: Vec<u8> = (0..(3 * CHUNK + 123)).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let mut b = FileBuf::new(File::open(&p).unwrap()).unwrap();
        b.advance(10);
        let mid = b.copy_to_bytes(2 * CHUNK + 5);
        assert_eq!(&mid[..], &data[10..10 + 2 * CHUNK + 5]);
        let rest = b.copy_to_bytes(b.remaining());
        assert_eq!(&rest[..], &data[10 + 2 * CHUNK + 5..]);
    }

    #[test]
    fn a_truncated_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vision.onnx");
        let whole = std::fs::read(bundle_graph("clip-test/vision.onnx")).unwrap();
        std::fs::write(&p, &whole[..whole.len() / 2]).unwrap();
        let e = read_inference_model(&tract_onnx::onnx(), &p).unwrap_err();
        assert!(format!("{e:#}").contains("vision.onnx"), "{e:#}");
    }
}
