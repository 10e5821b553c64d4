//! Helpers for the workspace's end-to-end tests: where the binaries and bundles are.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A binary of the workspace, built in the same profile as this test
/// (`scripts/test` builds them first). A missing binary fails the test.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/e2e-<hash> -> target/<profile>/<name>
    let dir = exe.parent().and_then(|d| d.parent()).expect("target/<profile>");
    let p = dir.join(name);
    assert!(p.is_file(), "{} is missing: run `cargo build --workspace --bins` in the same profile first (scripts/test does)", p.display());
    p
}

pub fn run(name: &str, args: &[&str]) -> Output {
    Command::new(bin(name)).args(args).current_dir(repo()).output().expect("binary starts")
}

pub fn clip_bundle() -> String {
    repo().join("models/clip-test").display().to_string()
}

pub fn reference_image(name: &str) -> String {
    repo().join("models/clip-test/reference/images").join(name).display().to_string()
}

pub fn reference() -> serde_json::Value {
    let p = repo().join("models/clip-test/reference/reference.json");
    serde_json::from_str(&std::fs::read_to_string(p).expect("reference.json"))
        .expect("reference.json parses")
}

pub mod broker;

/// `owlet search --json` with the CLIP test bundle over `index` (a folder or a
/// history.db): the hits, best first.
pub fn owlet_search(index: &std::path::Path, text: &str, k: usize) -> serde_json::Value {
    let index = index.to_str().expect("a UTF-8 path");
    let k = k.to_string();
    let args = ["search", "-m", &clip_bundle(), "--index", index, text, "-k", &k, "--json"];
    let out = run("owlet", &args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("search --json prints JSON")
}

pub fn blip2_bundle() -> String {
    repo().join("models/blip2-test").display().to_string()
}

/// The bundled demo models, trained on generated scenes (models/demo/).
pub fn demo_clip_bundle() -> String {
    repo().join("models/clip-demo").display().to_string()
}

pub fn demo_blip2_bundle() -> String {
    repo().join("models/blip2-demo").display().to_string()
}

/// A demo frame and what is in it (models/scenes/demo/scenes.jsonl).
pub struct DemoScene {
    pub file: std::path::PathBuf,
    pub caption: String,
    pub kinds: Vec<String>,
}

pub fn demo_scenes_dir() -> std::path::PathBuf {
    repo().join("models/scenes/demo")
}

pub fn demo_scenes() -> Vec<DemoScene> {
    let text =
        std::fs::read_to_string(demo_scenes_dir().join("scenes.jsonl")).expect("scenes.jsonl");
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a scene");
            DemoScene {
                file: demo_scenes_dir().join(v["file"].as_str().unwrap()),
                caption: v["caption"].as_str().unwrap().to_string(),
                kinds: v["objects"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|o| o["kind"].as_str().unwrap().to_string())
                    .collect(),
            }
        })
        .collect()
}

/// The demo scene a published `frame` path names.
pub fn demo_scene_of(frame: &str) -> DemoScene {
    let name = std::path::Path::new(frame).file_name().expect("a file name").to_owned();
    demo_scenes()
        .into_iter()
        .find(|s| s.file.file_name() == Some(&name))
        .unwrap_or_else(|| panic!("{frame} is no demo scene"))
}
