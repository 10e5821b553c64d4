//! fix_text against ftfy 6.3.1's own output on the strings of
//! models/clip-test/reference/text_cleanup.json (written by models/reference_text.py).

use serde_json::Value;

#[test]
fn fix_text_is_identical_to_ftfy() {
    let path =
        concat!(env!("CARGO_MANIFEST_DIR"), "/../models/clip-test/reference/text_cleanup.json");
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = reference["cases"].as_array().unwrap();
    assert!(cases.len() >= 300);
    let mut differ = Vec::new();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want = case["fix_text"].as_str().unwrap();
        let got = owlet_ftfy::fix_text(text, None);
        if got != want {
            differ.push(format!("{text:?}\n    ftfy  {want:?}\n    owlet {got:?}"));
        }
    }
    eprintln!("fix_text: {}/{} identical to ftfy", cases.len() - differ.len(), cases.len());
    assert!(differ.is_empty(), "{} differ:\n{}", differ.len(), differ.join("\n"));
}
