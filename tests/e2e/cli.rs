use owlet_e2e::*;
use serde_json::Value;

fn json_of(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

#[test]
fn classify_json_gives_the_reference_zero_shot_probabilities() {
    let r = reference();
    let zs = &r["zero_shot"];
    let labels = strings(&zs["labels"]).join(",");
    let templates = strings(&zs["templates"]);
    let images: Vec<String> = strings(&r["images"]).iter().map(|n| reference_image(n)).collect();
    let b = clip_bundle();
    let mut args = vec!["classify", "--model", &b, "--labels", &labels, "--json", "--threads", "2"];
    for t in &templates {
        args.extend(["--template", t]);
    }
    args.extend(images.iter().map(String::as_str));
    let out = json_of(&run("owlet", &args));
    let results = out["results"].as_array().unwrap();
    assert_eq!(results.len(), images.len());
    for (res, expected) in results.iter().zip(zs["probs"].as_array().unwrap()) {
        let expected: Vec<f64> =
            expected.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        for (label, e) in strings(&zs["labels"]).iter().zip(&expected) {
            let got = res["scores"][label].as_f64().unwrap();
            assert!((got - e).abs() < 1e-4, "{label}: {got} vs {e}");
        }
        let best =
            expected.iter().cloned().enumerate().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap().0;
        assert_eq!(res["top_label"], strings(&zs["labels"])[best]);
    }
}

#[test]
fn classify_table_lists_each_image_with_ranked_labels() {
    let b = clip_bundle();
    let img = reference_image("chelsea.png");
    let out =
        run("owlet", &["classify", "-m", &b, "--labels", "cat, dog ,car", "--top", "2", &img]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].ends_with("chelsea.png"));
    assert!(lines[1].contains('%') && lines[2].contains('%'));
}

#[test]
fn similarity_json_is_an_images_by_texts_matrix_of_cosines() {
    let b = clip_bundle();
    let (a, c) = (reference_image("chelsea.png"), reference_image("rocket.jpg"));
    let out = json_of(&run(
        "owlet",
        &[
            "similarity",
            "-m",
            &b,
            "--images",
            &a,
            &c,
            "--texts",
            "a cat",
            "a rocket",
            "a dog",
            "--json",
        ],
    ));
    let cos = out["cosine"].as_array().unwrap();
    assert_eq!(cos.len(), 2);
    for row in cos {
        assert_eq!(row.as_array().unwrap().len(), 3);
        assert!(row.as_array().unwrap().iter().all(|v| v.as_f64().unwrap().abs() <= 1.0 + 1e-6));
    }
    for row in out["probs"].as_array().unwrap() {
        let s: f64 = row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).sum();
        assert!((s - 1.0).abs() < 1e-5);
    }
}

#[test]
fn embed_text_json_gives_unit_vectors_matching_the_reference_direction() {
    let r = reference();
    let texts = strings(&r["texts"]);
    let b = clip_bundle();
    let out =
        json_of(&run("owlet", &["embed", "-m", &b, "--json", "--text", &texts[0], &texts[1]]));
    let rows = out["embeddings"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for (i, row) in rows.iter().enumerate() {
        let e: Vec<f64> =
            row["embedding"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let reference: Vec<f64> =
            r["text_embeds"][i].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let norm = e.iter().map(|x| x * x).sum::<f64>().sqrt();
        let rn = reference.iter().map(|x| x * x).sum::<f64>().sqrt();
        let cos = e.iter().zip(&reference).map(|(a, b)| a * b).sum::<f64>() / (norm * rn);
        assert!((norm - 1.0).abs() < 1e-5 && cos > 0.99999, "norm {norm}, cosine {cos}");
    }
}

#[test]
fn tokenize_json_matches_clip_tokenizer() {
    let r = reference();
    let case = &r["tokenization"][0];
    let b = clip_bundle();
    let out =
        json_of(&run("owlet", &["tokenize", "-m", &b, "--json", case["text"].as_str().unwrap()]));
    let expected: Vec<i64> = case["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .zip(case["attention_mask"].as_array().unwrap())
        .filter(|(_, m)| m.as_i64() == Some(1))
        .map(|(v, _)| v.as_i64().unwrap())
        .collect();
    let got: Vec<i64> =
        out["input_ids"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    assert_eq!(got, expected);
    assert_eq!(out["tokens"], case["tokens"]);
}

#[test]
fn tokenize_shows_the_clean_up_and_readable_pieces() {
    let b = clip_bundle();
    // A phone's curly apostrophe, an HTML entity and an accent.
    let out = json_of(&run("owlet", &["tokenize", "-m", &b, "--json", "Don’t  caf&eacute;"]));
    assert_eq!(out["cleanup"], "openai");
    assert_eq!(out["cleaned"], "don't café");
    let pieces: Vec<&str> =
        out["pieces"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert_eq!(pieces.first(), Some(&"<|startoftext|>"));
    assert_eq!(pieces.last(), Some(&"<|endoftext|>"));
    // The byte-level symbols of "café" read back as the word and its end.
    assert_eq!(pieces[1..pieces.len() - 1].concat(), "don 't café ");
    assert_eq!(out["input_ids"].as_array().unwrap().len(), pieces.len());
}

#[test]
fn preprocess_writes_the_models_view_identical_to_clip_image_processor() {
    let b = clip_bundle();
    let tmp = tempfile::Builder::new().prefix("owlet-e2e-pre-").tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let out_png = dir.join("view.png");
    let out = run(
        "owlet",
        &["preprocess", "-m", &b, &reference_image("coffee.jpg"), "-o", out_png.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let view = image::open(&out_png).unwrap().into_rgb8();
    assert_eq!((view.width(), view.height()), (224, 224));
    // Normalise the written pixels and compare with transformers' pixel_values.
    let expected: ndarray::Array3<f32> =
        ndarray_npy::read_npy(repo().join("models/clip-test/reference/coffee.pixel_values.npy"))
            .unwrap();
    // OPENAI_CLIP_MEAN / _STD, as the bundle's owlet.toml has them (f32).
    let mean = [0.481_454_66_f32, 0.457_827_5, 0.408_210_73];
    let std = [0.268_629_54_f32, 0.261_302_6, 0.275_777_1];
    let mut worst = 0f32;
    for (x, y, p) in view.enumerate_pixels() {
        for c in 0..3 {
            let v = ((p.0[c] as f64 / 255.0) as f32 - mean[c]) / std[c];
            worst = worst.max((v - expected[[c, y as usize, x as usize]]).abs());
        }
    }
    assert!(worst < 1e-5, "worst difference {worst}");
}

#[test]
fn a_bad_image_among_good_ones_is_reported_and_the_rest_still_classified() {
    let tmp = tempfile::Builder::new().prefix("owlet-e2e-bad-").tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let bad = dir.join("broken.jpg");
    std::fs::write(&bad, b"\xff\xd8\xff\xe0 not really a jpeg").unwrap();
    let b = clip_bundle();
    let good = reference_image("chelsea.png");
    let out = run(
        "owlet",
        &["classify", "-m", &b, "--labels", "cat,dog", "--json", &good, bad.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "some inputs failed -> exit 1");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.jpg"), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["results"].as_array().unwrap().len(), 1);
}

#[test]
fn fatal_errors_exit_2_with_one_clear_line_and_no_panic() {
    let b = clip_bundle();
    let img = reference_image("chelsea.png");
    for (args, needle) in [
        (
            vec!["classify", "-m", "/no/such/bundle", "--labels", "a", img.as_str()],
            "/no/such/bundle",
        ),
        (vec!["classify", "-m", &b, "--labels", " , ", img.as_str()], "--labels is empty"),
        (vec!["classify", "-m", &b, "--labels", "a", "/no/such.png"], "no such.png"),
        (
            vec![
                "classify",
                "-m",
                &b,
                "--labels",
                "a",
                "--template",
                "no placeholder",
                img.as_str(),
            ],
            "placeholder",
        ),
    ] {
        let out = run("owlet", &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        let needle = needle.replace("no such.png", "/no/such.png");
        assert!(
            stderr.contains(&needle) || (needle == "placeholder" && stderr.contains("{}")),
            "{args:?}: {stderr}"
        );
    }
}

fn blip2_reference() -> Value {
    let p = repo().join("models/blip2-test/reference/reference.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn blip2_case<'a>(r: &'a Value, image: &str, prompt: &str, beams: u64) -> &'a Value {
    r["generate"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["image"] == image
                && c["prompt"] == prompt
                && c["num_beams"] == beams
                && c["length_penalty"].is_null()
                && c["eos_token_id"] == 2
                && c["repetition_penalty"].is_null()
        })
        .expect("reference case")
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect()
}

#[test]
fn caption_json_gives_transformers_tokens_for_greedy_and_beam_search() {
    let r = blip2_reference();
    let b = repo().join("models/blip2-test").display().to_string();
    let img = repo().join("models/demo-frames/coffee.jpg").display().to_string();
    for beams in [1u64, 3] {
        let out = json_of(&run(
            "owlet",
            &[
                "caption",
                "-m",
                &b,
                "--json",
                "--max-new-tokens",
                "12",
                "--beams",
                &beams.to_string(),
                &img,
            ],
        ));
        let got = ids(&out["results"][0]["token_ids"]);
        let want: Vec<u64> = ids(&blip2_case(&r, "coffee.jpg", "", beams)["generated_ids"])
            .into_iter()
            .filter(|&t| t != 2)
            .collect();
        assert_eq!(got, want, "{beams} beam(s)");
        // Timings for benches/memory.py: loading, and the first token after the
        // image, which comes before the whole caption.
        let load = out["load_ms"].as_f64().expect("load_ms");
        let first = out["results"][0]["first_token_ms"].as_f64().expect("first_token_ms");
        let all = out["results"][0]["latency_ms"].as_f64().unwrap();
        assert!(load > 0.0 && first > 0.0 && first <= all, "{load} {first} {all}");
    }
}

#[test]
fn ask_uses_the_question_template() {
    let r = blip2_reference();
    let b = repo().join("models/blip2-test").display().to_string();
    let img = repo().join("models/demo-frames/chelsea.png").display().to_string();
    let out = json_of(&run(
        "owlet",
        &["ask", "-m", &b, "--json", "--max-new-tokens", "12", &img, "what colour is the car?"],
    ));
    let want = ids(&blip2_case(&r, "chelsea.png", "Question: what colour is the car? Answer:", 1)
        ["generated_ids"]);
    assert_eq!(ids(&out["token_ids"]), want);
}

#[test]
fn chat_reads_questions_from_stdin_and_survives_a_bad_one() {
    use std::io::Write;
    let b = repo().join("models/blip2-test").display().to_string();
    let img = repo().join("models/demo-frames/chelsea.png").display().to_string();
    let mut child = std::process::Command::new(bin("owlet"))
        .args(["chat", "-m", &b, "--json", "--max-new-tokens", "4", &img])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let long = "why ".repeat(400);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("what is it?\n{long}\nis it red?\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "two good questions answered");
    assert_eq!(lines[1]["question"], "is it red?");
    assert!(String::from_utf8_lossy(&out.stderr).contains("characters"));
}

#[test]
fn a_clip_bundle_given_to_caption_is_a_clear_error() {
    let img = reference_image("chelsea.png");
    let out = run("owlet", &["caption", "-m", &clip_bundle(), &img]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("where a blip2 bundle is needed"));
}

#[test]
fn caption_reports_a_corrupt_image_and_captions_the_rest() {
    let tmp = tempfile::Builder::new().prefix("owlet-e2e-cap-").tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let bad = dir.join("cut.jpg");
    let good = repo().join("models/demo-frames/rocket.jpg");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 4]).unwrap();
    let b = repo().join("models/blip2-test").display().to_string();
    let out = run(
        "owlet",
        &[
            "caption",
            "-m",
            &b,
            "--json",
            "--max-new-tokens",
            "3",
            good.to_str().unwrap(),
            bad.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cut.jpg"));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["results"].as_array().unwrap().len(), 1);
}

#[test]
fn index_search_and_cluster_find_the_same_photo_in_two_folders() {
    let tmp = tempfile::Builder::new().prefix("owlet-e2e-index-").tempdir().unwrap();
    let ix = tmp.path().join("ix");
    let ix_s = ix.to_str().unwrap();
    let refs = repo().join("models/clip-test/reference/images");
    for precision in ["f32", "int8"] {
        let _ = std::fs::remove_dir_all(&ix);
        let out = run(
            "owlet",
            &[
                "index",
                "add",
                "-m",
                &clip_bundle(),
                "--index",
                ix_s,
                "--precision",
                precision,
                "--camera",
                "porch",
                "models/demo-frames",
                refs.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let out = run(
            "owlet",
            &[
                "search",
                "-m",
                &clip_bundle(),
                "--index",
                ix_s,
                "--image",
                "models/demo-frames/rocket.jpg",
                "-k",
                "3",
                "--json",
            ],
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let hits: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let hits = hits.as_array().unwrap();
        assert_eq!(hits.len(), 3);
        // The same photo in both folders comes first, twice, at cosine ~1.
        for h in &hits[..2] {
            assert!(h["source"].as_str().unwrap().ends_with("rocket.jpg"), "{precision}: {hits:?}");
            assert!(h["score"].as_f64().unwrap() > 0.999, "{precision}: {hits:?}");
            assert_eq!(h["camera"], "porch");
        }
        assert!(hits[2]["score"].as_f64().unwrap() < hits[1]["score"].as_f64().unwrap());
    }
    let out = run(
        "owlet",
        &[
            "search",
            "-m",
            &clip_bundle(),
            "--index",
            ix_s,
            "a photo of a cat",
            "-k",
            "50",
            "--camera",
            "porch",
            "--json",
        ],
    );
    let hits: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(hits.as_array().unwrap().len(), 8, "all 8 entries, no more");
    let out = run(
        "owlet",
        &["search", "-m", &clip_bundle(), "--index", ix_s, "cat", "--camera", "garage", "--json"],
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
        serde_json::json!([])
    );

    let kw = tmp.path().join("keywords.txt");
    std::fs::write(&kw, "cat\nrocket\ncoffee\nperson\n").unwrap();
    let sheet = tmp.path().join("sheet.png");
    let out = run(
        "owlet",
        &[
            "cluster",
            "-m",
            &clip_bundle(),
            "--index",
            ix_s,
            "-k",
            "4",
            "--keywords",
            kw.to_str().unwrap(),
            "--sheet",
            sheet.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for cl in c["clusters"].as_array().unwrap() {
        // Each cluster is one photo, found in both folders.
        let names: std::collections::HashSet<String> = cl["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                std::path::Path::new(m.as_str().unwrap())
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names.len(), 1, "{c}");
        assert_eq!(cl["members"].as_array().unwrap().len(), 2, "{c}");
        assert_eq!(cl["keywords"].as_array().unwrap().len(), 3);
    }
    let png = image::open(&sheet).unwrap();
    assert_eq!((png.width(), png.height()), (8 * 96, 4 * 96));
    // A different model's embeddings are refused.
    let out = run(
        "owlet",
        &["index", "add", "-m", "models/blip2-test", "--index", ix_s, "models/demo-frames"],
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn results_say_the_device_and_cuda_without_a_gpu_build_is_one_clear_error() {
    let img = repo().join("models/scenes/demo/demo-00117.jpg").display().to_string();
    let clip = repo().join("models/clip-demo").display().to_string();
    let out = run("owlet", &["classify", "-m", &clip, "--labels", "car,dog", "--json", &img]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json_of(&out)["device"], "cpu");

    let out =
        run("owlet", &["classify", "-m", &clip, "--labels", "car,dog", "--device", "cuda", &img]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--device cuda")
            && stderr.contains("without CUDA")
            && !stderr.contains("panicked"),
        "{stderr}"
    );

    // doctor: says what this build can do, exits 1 (no usable GPU here).
    let out = run("owlet", &["doctor", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["auto_uses"], "cpu");
    assert_eq!(v["cuda"]["built_in"], false);
}

#[test]
fn a_reader_that_stops_early_ends_owlet_quietly_not_with_a_panic() {
    // `owlet embed ... | head -1`: the pipe closes while owlet still prints.
    use std::io::Read;
    use std::process::{Command, Stdio};
    let texts: Vec<String> = (0..3000).map(|i| i.to_string()).collect(); // > a 64 KiB pipe buffer of output
    let mut args = vec!["embed".to_string(), "-m".into(), clip_bundle(), "--text".into()];
    args.extend(texts);
    let mut child = Command::new(bin("owlet"))
        .args(&args)
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap(); // then drop: the pipe closes
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(out.status.code(), Some(101), "{stderr}");
}

#[test]
fn an_int8_bundle_from_owlet_quantize_classifies_and_captions_like_fp32() {
    let tmp = tempfile::tempdir().unwrap();
    let demo = |f: &str| repo().join("models/scenes/demo").join(f).display().to_string();
    // One thing in each: a blue bird, and the red car of the bridge's demo.
    let (bird, car) = (demo("demo-00001.jpg"), demo("demo-00117.jpg"));
    let clip8 = tmp.path().join("clip-int8").display().to_string();
    let out = run(
        "owlet-quantize",
        &[&repo().join("models/clip-demo").display().to_string(), &clip8, "--to", "int8"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("24 linear layers to int8"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let labels = "car,person,dog,bird,bicycle,package";
    let out = run("owlet", &["classify", "-m", &clip8, "--labels", labels, "--json", &bird, &car]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = json_of(&out);
    assert_eq!(v["results"][0]["top_label"], "bird", "{v}");
    assert_eq!(v["results"][1]["top_label"], "car", "{v}");
    let out = run(
        "owlet",
        &["bench", "-m", &clip8, "--batch", "1", "--runs", "1", "--json", "--profile"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = json_of(&out);
    assert_eq!(v["precision"], "int8");
    // --profile: each figure's time per kind of op; the products are owlet's int8
    // op, 16 of them per run in each encoder: 4 layers x (Q, K and V as one, out,
    // fc1, fc2).
    for row in v["results"].as_array().unwrap() {
        let ops = row["ops"].as_array().unwrap_or_else(|| panic!("no op times: {row}"));
        let int8 =
            ops.iter().find(|o| o["op"] == "OwletMatMulInt8").unwrap_or_else(|| panic!("{row}"));
        assert_eq!(int8["calls"], 16.0, "{row}");
        assert!(int8["ms"].as_f64().unwrap() > 0.0, "{row}");
    }
    // What a figure from a board needs with it: the machine, each kernel family's
    // pick (the int8 bundle's products on one of the int8 kernels), tract's kernels.
    assert!(v["machine"].as_str().is_some_and(|m| m.contains(" x ")), "{v}");
    let kernels = v["kernels"].as_array().unwrap();
    assert_eq!(kernels.len(), 8, "{v}");
    let int8 = kernels.iter().find(|k| k["family"] == "int8").unwrap();
    assert!(int8["kernel"].as_str().unwrap().contains("qgemm"), "{v}");
    let tract = v["tract_matmul_kernels"].as_array().unwrap();
    assert!(
        !tract.is_empty() && tract.iter().all(|k| !k.as_str().unwrap().contains("generic")),
        "{v}"
    );
    let out =
        run("owlet", &["bench", "-m", &clip8, "--batch", "2", "--runs", "1", "--threads", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("machine: ") && text.contains(", 1 thread\n"), "{text}");
    assert!(
        text.contains(&format!("owlet kernels: int8 {}", int8["kernel"].as_str().unwrap())),
        "{text}"
    );
    assert!(text.contains("ms per image)") && text.contains("ms per text)"), "{text}");

    let blip8 = tmp.path().join("blip2-int8").display().to_string();
    let out = run(
        "owlet-quantize",
        &[&repo().join("models/blip2-demo").display().to_string(), &blip8, "--to", "int8"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run("owlet", &["caption", "-m", &blip8, "--json", &bird]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("a blue bird"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn owlet_quantize_static_activations_need_a_calibration_set_and_then_report() {
    let tmp = tempfile::tempdir().unwrap();
    let clip = repo().join("models/clip-demo").display().to_string();
    let out_dir = tmp.path().join("clip-int8-static").display().to_string();
    let out = run("owlet-quantize", &[&clip, &out_dir, "--to", "int8", "--static-activations"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--calibrate"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let heldout = repo().join("models/scenes/heldout").display().to_string();
    let out = run(
        "owlet-quantize",
        &[
            &clip,
            &out_dir,
            "--to",
            "int8",
            "--static-activations",
            "--calibrate",
            &heldout,
            "--labels",
            "car,person,dog,bird,bicycle,package",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("24 with static activation scales"), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("clip-int8-static/quantize-report.json")).unwrap(),
    )
    .unwrap();
    assert!(report["image_cosine_mean"].as_f64().unwrap() >= 0.999, "{report}");
    // The report's per-layer errors: every int8 layer of both graphs.
    assert_eq!(report["layer_errors"].as_array().map(Vec::len), Some(48), "{report}");
    assert!(
        stderr.contains("int8 layers")
            || String::from_utf8_lossy(&out.stdout).contains("int8 layers"),
        "{stderr}"
    );
}

#[test]
fn owlet_quantize_keeps_float_the_layers_whose_error_is_above_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let clip = repo().join("models/clip-demo").display().to_string();
    let heldout = repo().join("models/scenes/heldout").display().to_string();
    let labels = "car,person,dog,bird,bicycle,package";
    let out = run(
        "owlet-quantize",
        &[
            &clip,
            &tmp.path().join("a").display().to_string(),
            "--to",
            "int8",
            "--max-layer-error",
            "0",
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("percentage above 0"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 0.5%: below the demo's worst layers (~1%) on every kernel, above most.
    let dir = tmp.path().join("clip-int8");
    let out = run(
        "owlet-quantize",
        &[
            &clip,
            &dir.display().to_string(),
            "--to",
            "int8",
            "--calibrate",
            &heldout,
            "--labels",
            labels,
            "--max-layer-error",
            "0.5",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("quantize-report.json")).unwrap())
            .unwrap();
    assert_eq!(report["max_layer_error"].as_f64(), Some(0.005), "{report}");
    let kept: Vec<&str> = report["kept_float_for_error"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(!kept.is_empty(), "{report}");
    // Exactly the layers above the limit, each said on stderr; the rest int8.
    let errors = report["layer_errors"].as_array().unwrap();
    assert_eq!(errors.len(), 48, "{report}");
    for e in errors {
        let layer = format!("{}:{}", e["graph"].as_str().unwrap(), e["layer"].as_str().unwrap());
        let err = e["relative_error"].as_f64().unwrap();
        assert_eq!(kept.contains(&layer.as_str()), err > 0.005, "{layer} {err}: {report}");
    }
    for name in &kept {
        assert!(stderr.contains(&format!("keeping {name} float")), "{stderr}");
    }
    let int8_layers = 48 - kept.len();
    assert!(stderr.matches("linear layers to int8").count() == 2, "{stderr}");
    let said: usize = stderr
        .lines()
        .filter(|l| l.contains("linear layers to int8"))
        .filter_map(|l| l.split_once(": ")?.1.split(' ').next()?.parse::<usize>().ok())
        .sum();
    assert_eq!(said, int8_layers, "{stderr}");
}

/// `OWLET_INT8_KERNEL` picks the int8 kernel by name (to measure another one on
/// this CPU), `OWLET_KERNEL` any family's; a name this CPU cannot run is a warning,
/// and the best one runs.
#[test]
fn owlet_kernel_variables_name_the_kernels_graphs_run_on() {
    let tmp = tempfile::tempdir().unwrap();
    let clip8 = tmp.path().join("clip-int8").display().to_string();
    let out = run(
        "owlet-quantize",
        &[&repo().join("models/clip-demo").display().to_string(), &clip8, "--to", "int8"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let car = repo().join("models/scenes/demo/demo-00117.jpg").display().to_string();
    let classify = |variable: &str, value: &str| {
        let out = std::process::Command::new(bin("owlet"))
            .args([
                "classify",
                "-m",
                &clip8,
                "--labels",
                "car,person,dog,bird,bicycle,package",
                "--json",
                &car,
            ])
            .env(variable, value)
            .env("RUST_LOG", "owlet_kernels=info")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (
            json_of(&out)["results"][0]["top_label"].as_str().unwrap().to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (label, log) = classify("OWLET_INT8_KERNEL", "scalar_qgemm_i8");
    assert_eq!(label, "car");
    assert!(log.contains("owlet int8 kernel: scalar_qgemm_i8"), "{log}");
    let (label, log) = classify("OWLET_INT8_KERNEL", "no_such_kernel");
    assert_eq!(label, "car");
    assert!(log.contains("int8 kernel \"no_such_kernel\": not one this CPU runs"), "{log}");
    let (label, log) = classify(
        "OWLET_KERNEL",
        "softmax=reference_softmax_rows,layer_norm=reference_layer_norm_rows",
    );
    assert_eq!(label, "car");
    assert!(log.contains("owlet softmax kernel: reference_softmax_rows"), "{log}");
    assert!(log.contains("owlet layer_norm kernel: reference_layer_norm_rows"), "{log}");
    assert!(!log.contains("owlet int8 kernel: scalar_qgemm_i8"), "the best int8 kernel: {log}");
}

/// `OWLET_REWRITES=off` leaves the plans to tract: owlet's softmax and layer norm
/// are gone from the profile, tract's own ops are there instead; by default it is
/// the other way round. Embeddings agree either way (to float rounding).
#[test]
fn owlet_rewrites_off_leaves_the_plans_to_tract() {
    let b = clip_bundle();
    let profile = |rewrites: &str| -> Vec<String> {
        let out = std::process::Command::new(bin("owlet"))
            .args(["bench", "-m", &b, "--batch", "1", "--runs", "1", "--json", "--profile"])
            .env("OWLET_REWRITES", rewrites)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v = json_of(&out);
        v["results"][0]["ops"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["op"].as_str().unwrap().to_string())
            .collect()
    };
    let (on, off) = (profile("on"), profile("off"));
    for op in ["OwletSoftmax", "OwletLayerNorm", "OwletQuickGelu"] {
        assert!(on.iter().any(|o| o == op), "{op} missing by default: {on:?}");
        assert!(!off.iter().any(|o| o == op), "{op} with OWLET_REWRITES=off: {off:?}");
    }
    assert!(off.iter().any(|o| o == "Softmax"), "tract's softmax with OWLET_REWRITES=off: {off:?}");
    let embed = |rewrites: &str| -> Vec<f64> {
        let out = std::process::Command::new(bin("owlet"))
            .args(["embed", "-m", &b, "--json", &reference_image("rocket.jpg")])
            .env("OWLET_REWRITES", rewrites)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        json_of(&out)["embeddings"][0]["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let (a, z) = (embed("on"), embed("off"));
    assert_eq!(a.len(), z.len());
    for (x, y) in a.iter().zip(&z) {
        assert!((x - y).abs() < 1e-5, "{x} vs {y}");
    }
}

/// Issue 22: `--beams 0` and out-of-range token ids in a manifest were accepted.
#[test]
fn zero_beams_and_a_token_id_outside_the_vocabulary_are_refused_by_name() {
    let img = reference_image("chelsea.png");
    let out = run("owlet", &["caption", "-m", &blip2_bundle(), "--beams", "0", &img]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--beams"), "{stderr}");

    // A copy of the test bundle (under 1 MB) with an eos id past its vocabulary.
    let tmp = tempfile::Builder::new().prefix("owlet-e2e-badid-").tempdir().unwrap();
    let src = std::path::PathBuf::from(blip2_bundle());
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() && e.file_name() != "owlet.toml" {
            std::fs::copy(e.path(), tmp.path().join(e.file_name())).unwrap();
        }
    }
    let manifest = std::fs::read_to_string(src.join("owlet.toml")).unwrap();
    let edited = manifest.replace("eos_token_id = 2", "eos_token_id = 4000000");
    assert_ne!(edited, manifest);
    std::fs::write(tmp.path().join("owlet.toml"), edited).unwrap();
    let out = run("owlet", &["caption", "-m", tmp.path().to_str().unwrap(), &img]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("generation.eos_token_id") && stderr.contains("4000000"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A process busy on one of the pool's two cores: owlet's pool sees that its
/// threads ran only part of the time they were there for, stops spinning (and says
/// so), and the run completes. owlet and the busy loop are pinned with `taskset`
/// so that they share a core whatever the machine's size. (The test model's plans
/// take about a millisecond: 200 runs fill the windows the pool judges.)
#[test]
fn the_pool_stops_spinning_when_another_process_shares_its_cores() {
    // Two of the CPUs this process may use (a container's may not start at 0).
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let allowed = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap();
    let cpus: Vec<u32> = allowed
        .trim()
        .split(',')
        .flat_map(|part| match part.split_once('-') {
            Some((a, b)) => (a.parse().unwrap()..=b.parse().unwrap()).collect::<Vec<u32>>(),
            None => vec![part.parse().unwrap()],
        })
        .collect();
    assert!(cpus.len() >= 2, "this test needs two CPUs to pin to; allowed: {allowed}");
    let (pool, shared) = (format!("{},{}", cpus[0], cpus[1]), cpus[1].to_string());
    // Killed when dropped, a failed assertion included: a busy loop left behind
    // would slow every later test.
    struct Busy(std::process::Child);
    impl Drop for Busy {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let busy = Busy(
        std::process::Command::new(owlet_e2e::broker::program("taskset"))
            .args(["-c", &shared, "sh", "-c", "while :; do :; done"])
            .spawn()
            .unwrap(),
    );
    // 200 runs of the small test model, pinned to the two CPUs; stderr.
    let bench = |spin: &str| -> String {
        let out = std::process::Command::new(owlet_e2e::broker::program("taskset"))
            .args(["-c", &pool])
            .arg(bin("owlet"))
            .args(["bench", "-m", &clip_bundle(), "--batch", "1", "--runs", "200"])
            .args(["--threads", "2", "--device", "cpu"])
            .env("RUST_LOG", "owlet_runtime::pool_spin=info")
            .env("OWLET_POOL_SPIN", spin)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{log}");
        log
    };
    let log = bench(""); // unset: the default
    assert!(log.contains("the cores are shared with another process"), "{log}");
    // Told to spin whatever happens, it does not judge, on the same shared cores.
    let log = bench("always");
    assert!(!log.contains("pool:"), "{log}");
    drop(busy);
}
