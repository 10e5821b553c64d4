//! Plans run from several threads at once on one thread pool, as the bridge's
//! cameras do: each caller gets what it gets alone, and nothing panics.
//!
//! tract keeps a thread's scratch space borrowed while one of its products waits
//! for the pool; a pool thread that picked up another caller's whole plan in that
//! wait borrowed it again and panicked ("RefCell already borrowed", seen first in
//! tests/e2e/frigate.rs with two cameras). `engine::on_pool` now runs one caller's
//! plan on the pool at a time. Its own test binary: the pool is process-wide.

use std::path::PathBuf;
use std::sync::Arc;

use owlet_runtime::image_io::{load_rgb, DecodeLimits};
use owlet_runtime::models::Blip2;
use owlet_runtime::models::Clip;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn callers_on_several_threads_share_the_pool_and_each_gets_its_own_result() {
    let clip = Arc::new(Clip::load(repo().join("models/clip-demo")).unwrap());
    let scenes = ["demo-00117.jpg", "demo-00001.jpg", "demo-00013.jpg"];
    let images: Vec<_> = scenes
        .iter()
        .map(|s| {
            load_rgb(&repo().join("models/scenes/demo").join(s), DecodeLimits::default()).unwrap()
        })
        .collect();
    // What one caller gets, alone on one thread.
    let alone: Vec<Vec<f32>> =
        images.iter().map(|i| clip.embed_images(std::slice::from_ref(i)).unwrap().data).collect();
    let texts = ["a red car", "a blue bird", "a person with a bicycle"];
    let alone_texts = clip.embed_texts(&texts).unwrap().data;

    let blip2 = Arc::new(Blip2::load(repo().join("models/blip2-demo")).unwrap());
    let cfg = blip2.default_config();
    let caption_of =
        |img| blip2.caption(&blip2.encode_image(img).unwrap(), &cfg, &mut |_| {}).unwrap().text;
    let alone_captions: Vec<String> = images.iter().map(caption_of).collect();

    owlet_runtime::engine::set_threads(2);
    let rounds =
        std::env::var("OWLET_CONCURRENT_ROUNDS").ok().and_then(|n| n.parse().ok()).unwrap_or(20);
    let mut callers = Vec::new();
    for t in 0..4 {
        let (clip, blip2, images, alone) =
            (clip.clone(), blip2.clone(), images.clone(), alone.clone());
        let (alone_texts, alone_captions, cfg) =
            (alone_texts.clone(), alone_captions.clone(), cfg.clone());
        callers.push(std::thread::spawn(move || {
            for r in 0..rounds {
                match (t + r) % 4 {
                    // A caption: the decoder's steps, its vocabulary product the
                    // largest on the pool.
                    3 => {
                        let i = r % images.len();
                        let q = blip2.encode_image(&images[i]).unwrap();
                        let got = blip2.caption(&q, &cfg, &mut |_| {}).unwrap().text;
                        assert_eq!(got, alone_captions[i]);
                    }
                    // One image at a time (a plan on the pool) ...
                    0 => {
                        let i = r % images.len();
                        let got = clip.embed_images(&[images[i].clone()]).unwrap().data;
                        assert_close(&got, &alone[i]);
                    }
                    // ... a batch, split into one part per pool thread ...
                    1 => {
                        let got = clip.embed_images(&images).unwrap().data;
                        assert_close(&got, &alone.concat());
                    }
                    // ... and the text encoder's batch.
                    _ => {
                        let got = clip.embed_texts(&texts).unwrap().data;
                        assert_close(&got, &alone_texts);
                    }
                }
            }
        }));
    }
    for c in callers {
        c.join().expect("a caller panicked");
    }
}

/// Within float noise: the pool splits products differently from one thread.
fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-3, "differs by {worst}");
}
