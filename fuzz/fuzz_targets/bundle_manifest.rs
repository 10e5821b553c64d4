//! A model bundle's owlet.toml: parsed and checked, or refused naming the field,
//! never a panic; what is accepted is what the model loaders rely on.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use owlet_formats::manifest::{Manifest, ModelKind};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Manifest::from_str(text, Path::new("bundle/owlet.toml")) {
        Ok(m) => {
            let p = &m.vision.preprocess;
            assert!(p.mean.len() == 3 && p.std.len() == 3 && p.std.iter().all(|s| *s > 0.0));
            assert!(p.crop_size >= 1 && p.crop_size <= p.size && m.vision.embed_dim > 0);
            match m.kind {
                ModelKind::Clip => {
                    let t = m.text.as_ref().expect("a clip bundle has [text]");
                    assert_eq!(t.embed_dim, m.vision.embed_dim);
                    assert!(m.clip.as_ref().expect("and [clip]").logit_scale > 0.0);
                }
                ModelKind::Blip2 => {
                    let d = m.decoder.as_ref().expect("a blip2 bundle has [decoder]");
                    let g = m.generation.as_ref().expect("and [generation]");
                    assert!(g.num_query_tokens >= 1 && g.num_query_tokens < d.max_positions);
                }
            }
        }
        Err(e) => assert!(!e.field.is_empty() && !e.reason.is_empty()),
    }
});
