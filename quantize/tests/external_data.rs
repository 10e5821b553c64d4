//! Graphs that keep their weights in external data files (ONNX's form past
//! protobuf's 2 GB, as torch.onnx.export writes BLIP-2's OPT-2.7B decoder): the
//! runtime runs them, owlet-quantize reads them in and converts them as it does
//! self-contained ones, and writes its own output so when it is large. Made here
//! from the demo CLIP with every tensor moved out (`write_model_with_limit(.., 0)`).

use std::path::{Path, PathBuf};

use owlet_quantize::onnx_file::{read_model, read_model_and_files, write_model_with_limit};
use owlet_quantize::{quantize_bundle, Options, Target};
use owlet_runtime::image_io::{load_rgb, DecodeLimits};
use owlet_runtime::models::Clip;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A copy of the bundle `from` whose graphs keep every tensor of 1 KB or more in
/// `<graph>.data`.
fn external_copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".onnx") {
            let (model, _) = read_model(&entry.path()).unwrap();
            write_model_with_limit(model, &to.join(&name), 0).unwrap();
        } else if entry.path().is_file() {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

fn embeddings(bundle: &Path) -> Vec<f32> {
    let frames: Vec<_> = ["demo-00001.jpg", "demo-00117.jpg"]
        .iter()
        .map(|f| {
            load_rgb(&repo().join("models/scenes/demo").join(f), DecodeLimits::default()).unwrap()
        })
        .collect();
    let clip = Clip::load(bundle).unwrap();
    let e = clip.embed_images(&frames).unwrap();
    let t = clip.text().embed(&["a photo of a car", "a photo of a bird"]).unwrap();
    e.rows().chain(t.rows()).flatten().copied().collect()
}

#[test]
fn a_bundle_with_external_data_runs_and_converts_as_the_self_contained_one() {
    let tmp = tempfile::tempdir().unwrap();
    let original = repo().join("models/clip-demo");
    let ext = tmp.path().join("clip-external");
    external_copy(&original, &ext);
    for g in ["vision.onnx", "text.onnx"] {
        let (graph, data) = (
            std::fs::metadata(ext.join(g)).unwrap().len(),
            std::fs::metadata(ext.join(format!("{g}.data"))).unwrap().len(),
        );
        assert!(graph * 20 < data, "{g}: {graph} bytes left in the graph, {data} in its data file");
        assert_eq!(
            read_model_and_files(&ext.join(g)).unwrap().2.into_iter().collect::<Vec<_>>(),
            vec![format!("{g}.data")]
        );
        // Read back, the model is the original one, every byte.
        let ((a, size_a), (b, size_b)) =
            (read_model(&original.join(g)).unwrap(), read_model(&ext.join(g)).unwrap());
        assert!(a == b, "{g}: the tensors read back differ");
        assert!(
            size_b >= size_a - size_a / 50,
            "{g}: size {size_b} counts the data file ({size_a} self-contained)"
        );
    }
    // The runtime (tract) reads external data itself: the same embeddings, exactly.
    assert_eq!(embeddings(&ext), embeddings(&original));

    // Converted, the same int8 graphs as from the self-contained bundle, and the
    // input's data files are not copied into the new bundle.
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    quantize_bundle(&original, &a, &Options::new(Target::Int8), &mut || {}).unwrap();
    quantize_bundle(&ext, &b, &Options::new(Target::Int8), &mut || {}).unwrap();
    for g in ["vision.onnx", "text.onnx"] {
        assert!(
            std::fs::read(a.join(g)).unwrap() == std::fs::read(b.join(g)).unwrap(),
            "{g} differs"
        );
    }
    let mut files: Vec<String> = std::fs::read_dir(&b)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into())
        .collect();
    files.sort();
    assert_eq!(files, ["owlet.toml", "text.onnx", "tokenizer.json", "vision.onnx"]);

    // An int8 bundle written with external data (as a large one is) runs the same.
    let c = tmp.path().join("int8-external");
    external_copy(&b, &c);
    assert!(c.join("vision.onnx.data").exists());
    assert_eq!(embeddings(&c), embeddings(&b));
}

#[test]
fn bad_external_data_is_a_clear_error_naming_the_tensor() {
    use prost::Message;
    let tmp = tempfile::tempdir().unwrap();
    let ext = tmp.path().join("ext");
    external_copy(&repo().join("models/clip-demo"), &ext);
    let graph = ext.join("vision.onnx");
    let bytes = std::fs::read(&graph).unwrap();
    let broken = |key: &str, value: &str| {
        let mut m = tract_onnx::pb::ModelProto::decode(bytes.as_slice()).unwrap();
        let t = m
            .graph
            .as_mut()
            .unwrap()
            .initializer
            .iter_mut()
            .find(|t| !t.external_data.is_empty())
            .unwrap();
        let name = t.name.clone();
        t.external_data.iter_mut().find(|e| e.key == key).unwrap().value = value.into();
        std::fs::write(&graph, m.encode_to_vec()).unwrap();
        (name, read_model(&graph).map(|_| ()).unwrap_err().to_string())
    };
    let (name, e) = broken("location", "../../etc/passwd");
    assert!(e.contains(&name) && e.contains("not a file in the graph's folder"), "{e}");
    let (_, e) = broken("location", "missing.data");
    assert!(e.contains("missing.data"), "{e}");
    let (name, e) = broken("length", "99999999999");
    assert!(e.contains(&name) && e.contains("past the end"), "{e}");
    let (_, e) = broken("offset", "minus one");
    assert!(e.contains("offset `minus one` is not a number"), "{e}");
}
