//! ONNX files in and out, with external data: protobuf caps a message at 2 GB, so
//! a graph with more weights than that (BLIP-2's OPT-2.7B decoder: 10.6 GB in
//! fp32, 2.7 GB in int8) keeps them in side files that its tensors point to
//! (`data_location = EXTERNAL`, with `location`, `offset` and `length`), as
//! torch.onnx.export writes it. `read_model` reads such weights into the model,
//! so the conversions see every tensor's bytes; `write_model` moves the large ones
//! out again into one `<file>.data` beside the graph when the graph would pass
//! `INLINE_LIMIT`. tract reads that form itself (owlet's runtime needs nothing).

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Component, Path};

use prost::Message;
use tract_onnx::pb::{ModelProto, StringStringEntryProto, TensorProto};

use crate::{Error, Result};

/// ONNX's `TensorProto.DataLocation.EXTERNAL`.
const EXTERNAL: i32 = 1;

/// Encoded graphs up to this size are written as one file; larger ones keep their
/// large tensors in `<file>.data` (protobuf's limit is 2 GiB; this leaves room).
pub const INLINE_LIMIT: u64 = 1 << 30;

/// Tensors smaller than this stay in the graph file when the rest moves out.
const MIN_EXTERNAL_BYTES: usize = 1024;

/// Read and decode an ONNX file, which must have a graph with nodes, with the
/// data of any tensor kept in an external file read in. Also returns its size in
/// bytes: the graph file and the external files it reads.
pub fn read_model(path: &Path) -> Result<(ModelProto, u64)> {
    read_model_and_files(path).map(|(model, size, _)| (model, size))
}

/// `read_model`, and the external files it read (names relative to the graph's
/// folder; empty for a self-contained graph): what a copy of the bundle must not
/// copy again.
pub fn read_model_and_files(path: &Path) -> Result<(ModelProto, u64, BTreeSet<String>)> {
    let (mut model, size, files) = read_model_lazily(path)?;
    inline_external_data(&mut model, path)?;
    Ok((model, size, files))
}

/// Encode and write `model` to `path` (large tensors to `<file>.data` past
/// `INLINE_LIMIT`); returns the bytes written, both files together. Takes the model:
/// its tensors' bytes move into the data file one by one.
pub fn write_model(model: ModelProto, path: &Path) -> Result<u64> {
    write_model_with_limit(model, path, INLINE_LIMIT)
}

/// `write_model` with the size past which tensors move out (`0`: every tensor of
/// `MIN_EXTERNAL_BYTES` or more), for tests.
pub fn write_model_with_limit(
    mut model: ModelProto,
    path: &Path,
    inline_limit: u64,
) -> Result<u64> {
    let io = |e| Error::Io(path.to_path_buf(), e);
    if (model.encoded_len() as u64) <= inline_limit {
        let out = model.encode_to_vec();
        std::fs::write(path, &out).map_err(io)?;
        return Ok(out.len() as u64);
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::Invalid(format!("{}: not a file name", path.display())))?;
    let data_name = format!("{name}.data");
    let data_path = path.with_file_name(&data_name);
    let mut data = std::io::BufWriter::new(
        std::fs::File::create(&data_path).map_err(|e| Error::Io(data_path.clone(), e))?,
    );
    // Each tensor's bytes leave the message as they are written: never held twice.
    let mut offset = 0u64;
    for t in model.graph.iter_mut().flat_map(|g| g.initializer.iter_mut()) {
        if t.raw_data.len() < MIN_EXTERNAL_BYTES {
            continue;
        }
        let raw = std::mem::take(&mut t.raw_data);
        data.write_all(&raw).map_err(|e| Error::Io(data_path.clone(), e))?;
        t.data_location = Some(EXTERNAL);
        t.external_data = [
            ("location", data_name.clone()),
            ("offset", offset.to_string()),
            ("length", raw.len().to_string()),
        ]
        .into_iter()
        .map(|(key, value)| StringStringEntryProto { key: key.into(), value })
        .collect();
        offset += raw.len() as u64;
    }
    data.flush().map_err(|e| Error::Io(data_path.clone(), e))?;
    let out = model.encode_to_vec();
    if out.len() as u64 > (2u64 << 30) - 1 {
        return Err(Error::Graph(
            path.to_path_buf(),
            format!("{} bytes without its weights: past protobuf's 2 GB", out.len()),
        ));
    }
    std::fs::write(path, &out).map_err(io)?;
    Ok(out.len() as u64 + offset)
}

fn is_external(t: &TensorProto) -> bool {
    t.data_location == Some(EXTERNAL) || !t.external_data.is_empty()
}

fn entry<'t>(t: &'t TensorProto, key: &str) -> Option<&'t str> {
    t.external_data.iter().find(|e| e.key == key).map(|e| e.value.as_str())
}

/// Where an external tensor's bytes are, checked against the file's size.
struct ExternalRef {
    file: std::path::PathBuf,
    location: String,
    offset: u64,
    length: u64,
}

/// The external data `t` names (None for a tensor with its own bytes), checked: a
/// file inside the graph's folder, and a range inside that file.
fn external_ref(t: &TensorProto, path: &Path) -> Result<Option<ExternalRef>> {
    if !is_external(t) {
        return Ok(None);
    }
    let bad = |why: String| {
        Error::Graph(path.to_path_buf(), format!("tensor {}: external data: {why}", t.name))
    };
    let location = entry(t, "location").ok_or_else(|| bad("no location".into()))?;
    // Only files inside the graph's folder: a graph names what it reads.
    let relative = Path::new(location);
    if location.is_empty() || relative.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(bad(format!("location `{location}` is not a file in the graph's folder")));
    }
    let number = |key: &str| -> Result<Option<u64>> {
        entry(t, key)
            .map(|v| v.parse::<u64>().map_err(|_| bad(format!("{key} `{v}` is not a number"))))
            .transpose()
    };
    let (offset, length) = (number("offset")?.unwrap_or(0), number("length")?);
    let file = path.parent().unwrap_or(Path::new(".")).join(relative);
    let size = std::fs::metadata(&file).map_err(|e| Error::Io(file.clone(), e))?.len();
    let length = length.unwrap_or(size.saturating_sub(offset));
    if offset.checked_add(length).is_none_or(|end| end > size) {
        return Err(bad(format!(
            "bytes {offset}..+{length} are past the end of {location} ({size} bytes)"
        )));
    }
    Ok(Some(ExternalRef { file, location: location.to_string(), offset, length }))
}

fn read_external(r: &ExternalRef) -> Result<Vec<u8>> {
    let mut f = std::fs::File::open(&r.file).map_err(|e| Error::Io(r.file.clone(), e))?;
    let mut raw = vec![0u8; r.length as usize];
    f.seek(SeekFrom::Start(r.offset))
        .and_then(|_| f.read_exact(&mut raw))
        .map_err(|e| Error::Io(r.file.clone(), e))?;
    Ok(raw)
}

/// The tensors that may hold external data: initializers and attributes' tensors.
fn tensors_mut(model: &mut ModelProto) -> impl Iterator<Item = &mut TensorProto> {
    model.graph.iter_mut().flat_map(|graph| {
        let attribute_tensors = graph.node.iter_mut().flat_map(|n| {
            n.attribute.iter_mut().flat_map(|a| a.t.iter_mut().chain(a.tensors.iter_mut()))
        });
        graph.initializer.iter_mut().chain(attribute_tensors)
    })
}

/// `read_model_and_files` without reading the external tensors' bytes: each
/// reference is checked (location, range) and left as it is, for `raw_bytes` to
/// read one tensor when it is needed and `inline_external_data` to bring in what is
/// left. A converter that reads a 10 GB decoder this way holds one layer's floats at
/// a time instead of all of them.
pub fn read_model_lazily(path: &Path) -> Result<(ModelProto, u64, BTreeSet<String>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io(path.to_path_buf(), e))?;
    let mut model = ModelProto::decode(bytes.as_slice())
        .map_err(|e| Error::Graph(path.to_path_buf(), format!("not an ONNX model: {e}")))?;
    match model.graph.as_ref() {
        None => return Err(Error::Graph(path.to_path_buf(), "the ONNX model has no graph".into())),
        Some(g) if g.node.is_empty() => {
            return Err(Error::Graph(path.to_path_buf(), "the ONNX graph has no nodes".into()))
        }
        Some(_) => {}
    }
    let mut files = BTreeSet::new();
    for t in tensors_mut(&mut model) {
        if let Some(r) = external_ref(t, path)? {
            files.insert(r.location);
        }
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut size = bytes.len() as u64;
    for name in &files {
        let file = dir.join(name);
        size += std::fs::metadata(&file).map_err(|e| Error::Io(file.clone(), e))?.len();
    }
    Ok((model, size, files))
}

/// A tensor's raw bytes: its own, or its external data (relative to the graph at
/// `path`) read now.
pub fn raw_bytes<'t>(t: &'t TensorProto, path: &Path) -> Result<std::borrow::Cow<'t, [u8]>> {
    match external_ref(t, path)? {
        Some(r) => Ok(std::borrow::Cow::Owned(read_external(&r)?)),
        None => Ok(std::borrow::Cow::Borrowed(&t.raw_data)),
    }
}

/// Read every external tensor's bytes into its `raw_data`. Returns the files read,
/// by their locations (relative to the graph's folder).
pub(crate) fn inline_external_data(
    model: &mut ModelProto,
    path: &Path,
) -> Result<BTreeSet<String>> {
    let mut files = BTreeSet::new();
    for t in tensors_mut(model) {
        let Some(r) = external_ref(t, path)? else { continue };
        t.raw_data = read_external(&r)?;
        t.data_location = None;
        t.external_data.clear();
        files.insert(r.location);
    }
    Ok(files)
}
