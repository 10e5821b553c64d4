//! `owlet-quantize IN_BUNDLE OUT_BUNDLE --to int8|fp16` — not implemented yet.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("owlet-quantize: not implemented yet (int8 / fp16 bundles are issue 6); no bundle was written");
    ExitCode::from(2)
}
