//! Token ids against OpenAI's own tokenizer (ftfy, html.unescape, whitespace, lower
//! case, BPE) and transformers' CLIPTokenizer, on the few hundred strings
//! models/reference_text.py generated and ran through both (never through owlet).

use owlet_runtime::tokenize::{TextCleanup, TextTokenizer};
use owlet_runtime::Bundle;
use serde_json::Value;

use crate::common::*;

fn cases() -> Vec<Value> {
    let p = clip_bundle().join("reference/text_cleanup.json");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    r["cases"].as_array().unwrap().clone()
}

fn tokenizer(cleanup: TextCleanup) -> TextTokenizer {
    let bundle = Bundle::open(clip_bundle()).unwrap();
    let mut spec = bundle.text().clone();
    spec.cleanup = cleanup;
    TextTokenizer::load(&bundle.path_of(&spec.tokenizer), &spec).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect()
}

/// Every case's ids from `cleanup`, against the reference's `key`; the mismatches.
fn mismatches(cleanup: TextCleanup, key: &str) -> (usize, Vec<String>) {
    let tok = tokenizer(cleanup);
    let cases = cases();
    let mut differ = Vec::new();
    for case in &cases {
        let text = case["text"].as_str().unwrap();
        let got = tok.tokenize(text).unwrap();
        let want = ids(&case[key]);
        if got.ids != want {
            differ.push(format!(
                "{text:?}\n    cleaned to {:?}\n    owlet   {:?}\n    {key} {want:?}",
                got.cleaned, got.ids
            ));
        }
        // Batches go through the same clean-up as single texts.
        let batch = tok.encode_batch(&[text]).unwrap();
        let n = batch.attention_mask.iter().filter(|&&m| m == 1).count();
        let batch_ids: Vec<u32> = batch.input_ids[..n].iter().map(|&i| i as u32).collect();
        assert_eq!(batch_ids, got.ids, "batch and single encodings of {text:?}");
    }
    (cases.len(), differ)
}

#[test]
fn ids_are_identical_to_openai_tokenizer_with_its_clean_up() {
    let (total, differ) = mismatches(TextCleanup::Openai, "openai_ids");
    assert!(total >= 300, "only {total} reference strings");
    eprintln!("OpenAI clean-up: {}/{total} identical", total - differ.len());
    assert!(differ.is_empty(), "{} of {total} differ:\n{}", differ.len(), differ.join("\n"));
}

#[test]
fn ids_are_identical_to_transformers_clip_tokenizer_in_its_mode() {
    let (total, differ) = mismatches(TextCleanup::Transformers, "transformers_ids");
    eprintln!("transformers mode: {}/{total} identical", total - differ.len());
    assert!(differ.is_empty(), "{} of {total} differ:\n{}", differ.len(), differ.join("\n"));
}

#[test]
fn the_two_modes_differ_where_the_clean_up_matters() {
    // The reference strings were chosen to exercise the clean-up: if the two
    // tokenizers agreed on all of them, the test above would prove nothing.
    let differ = cases().iter().filter(|c| c["openai_ids"] != c["transformers_ids"]).count();
    assert!(differ >= 100, "the modes differ on only {differ} strings");
}

#[test]
fn a_curly_apostrophe_from_a_phone_tokenizes_as_a_straight_one() {
    let tok = tokenizer(TextCleanup::Openai);
    let phone = tok.tokenize("don’t park here").unwrap();
    let pc = tok.tokenize("don't park here").unwrap();
    assert_eq!(phone.ids, pc.ids);
    assert_eq!(phone.pieces[1..3], ["don ".to_string(), "'t ".to_string()]);
}
