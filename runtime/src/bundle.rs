//! Model bundles: a folder with an `owlet.toml` manifest and the files it names.
//!
//! The manifest itself (its types, parsing and checks) is owlet-formats'
//! `manifest`, re-exported here; this module opens the folder and checks that the
//! files the manifest names are there.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
pub use owlet_formats::manifest::*;

/// A bundle on disk: its folder and its validated manifest.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The bundle's folder.
    pub dir: PathBuf,
    /// Its owlet.toml, validated.
    pub manifest: Manifest,
}

impl Bundle {
    /// Read and validate `DIR/owlet.toml`; check that every file it names exists.
    pub fn open(dir: impl AsRef<Path>) -> Result<Bundle> {
        let dir = dir.as_ref().to_path_buf();
        let path = dir.join(MANIFEST);
        if !dir.is_dir() {
            return Err(Error::BundleFile {
                path: dir,
                what: "bundle",
                reason: "not a folder (a bundle is a folder with an owlet.toml)".into(),
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Manifest {
            path: path.clone(),
            field: "(file)".into(),
            reason: e.to_string(),
        })?;
        let manifest = Manifest::from_str(&text, &path)?;
        let bundle = Bundle { dir, manifest };
        bundle.check_files()?;
        Ok(bundle)
    }

    /// The owlet.toml's path.
    pub fn manifest_path(&self) -> PathBuf {
        self.dir.join(MANIFEST)
    }

    /// A file the manifest names, as a path.
    pub fn path_of(&self, file: &Path) -> PathBuf {
        self.dir.join(file)
    }

    /// The text section, required for CLIP bundles (checked by `validate`).
    pub fn text(&self) -> &TextSpec {
        self.manifest.text.as_ref().expect("validated: clip bundles have [text]")
    }

    /// The decoder section, required for BLIP-2 bundles (checked by `validate`).
    pub fn decoder(&self) -> &DecoderSpec {
        self.manifest.decoder.as_ref().expect("validated: blip2 bundles have [decoder]")
    }

    /// The generation section, required for BLIP-2 bundles (checked by `validate`).
    pub fn generation(&self) -> &GenerationSpec {
        self.manifest.generation.as_ref().expect("validated: blip2 bundles have [generation]")
    }

    fn check_files(&self) -> Result<()> {
        let m = &self.manifest;
        let mut files: Vec<(&'static str, &Path)> = vec![("vision.file", &m.vision.file)];
        if let Some(t) = &m.text {
            files.push(("text.file", &t.file));
            files.push(("text.tokenizer", &t.tokenizer));
        }
        if let Some(d) = &m.decoder {
            files.push(("decoder.file", &d.file));
            files.push(("decoder.embed_tokens", &d.embed_tokens));
            files.push(("decoder.tokenizer", &d.tokenizer));
        }
        for (what, f) in files {
            let p = self.path_of(f);
            if !p.is_file() {
                return Err(Error::BundleFile {
                    path: p,
                    what,
                    reason: "named in owlet.toml but missing".into(),
                });
            }
        }
        Ok(())
    }
}
