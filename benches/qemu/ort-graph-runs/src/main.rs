//! onnxruntime's side of `benches/qemu/peer.sh`: one ONNX graph run a number of
//! times on one thread, with prepared inputs, the way owlet's
//! `runtime/examples/graph_runs` runs a bundle's graph. Under qemu with the
//! instruction-counting plugin, (count of 3 runs - count of 1) / 2 is one run.
//!
//!   ort-graph-runs LIBONNXRUNTIME MODEL.onnx RUNS [SYMBOL=SIZE ...]
//!
//! Inputs are made from the graph's own declarations: float inputs get the same
//! deterministic pixels as owlet's example; `input_ids` gets seven tokens after
//! CLIP's start token, then padding, and `attention_mask` ones over them (the text
//! graph's cost does not depend on which tokens); a decoder's `attention_mask`
//! (no `input_ids` beside it) is all ones over past and new positions. Dimensions the
//! graph leaves symbolic take SIZE from the arguments, or 1: a BLIP-2 decoder step
//! of owlet's prefix (32 queries, 5 prompt tokens) is `seq=1 past=37 total=38`.

use std::collections::HashMap;

use anyhow::{anyhow, bail, Context, Result};
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor, TensorElementType, ValueType};

/// The same pixels as owlet's example (runtime/examples/graph_runs.rs).
fn pixels(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect()
}

/// CLIP's start token, seven words, the end token, then padding (id 0).
fn token_ids(n: usize) -> Vec<i64> {
    let words = [49406, 320, 1125, 539, 320, 736, 1615, 49407];
    (0..n).map(|i| words.get(i).copied().unwrap_or(0)).collect()
}

fn input(
    name: &str,
    ty: &ValueType,
    sizes: &HashMap<String, i64>,
    has_ids: bool,
) -> Result<DynValue> {
    let ValueType::Tensor { ty, shape, dimension_symbols } = ty else {
        bail!("input {name} is not a tensor");
    };
    let dims: Vec<i64> = shape
        .iter()
        .zip(dimension_symbols.iter())
        .map(|(&d, symbol)| if d >= 0 { d } else { sizes.get(symbol).copied().unwrap_or(1) })
        .collect();
    let n = dims.iter().product::<i64>() as usize;
    let value = match ty {
        TensorElementType::Float32 => Tensor::from_array((dims, pixels(n)))?.into_dyn(),
        TensorElementType::Int64 if name.contains("mask") => {
            let ones =
                token_ids(n).iter().map(|&t| i64::from(t != 0 || !has_ids)).collect::<Vec<i64>>();
            Tensor::from_array((dims, ones))?.into_dyn()
        }
        TensorElementType::Int64 => Tensor::from_array((dims, token_ids(n)))?.into_dyn(),
        other => bail!("input {name}: {other:?} inputs are not made here"),
    };
    Ok(value)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        bail!("usage: ort-graph-runs LIBONNXRUNTIME MODEL.onnx RUNS [SYMBOL=SIZE ...]");
    }
    let runs: usize = args[3].parse().with_context(|| format!("RUNS {:?}", args[3]))?;
    let mut sizes = HashMap::new();
    for a in &args[4..] {
        let (k, v) = a.split_once('=').ok_or_else(|| anyhow!("{a:?}: not SYMBOL=SIZE"))?;
        sizes.insert(k.to_string(), v.parse::<i64>().with_context(|| format!("{a:?}"))?);
    }
    let env = ort::init_from(&args[1])
        .map_err(|e| anyhow!("loading {}: {e}", args[1]))?
        .build()
        .map_err(|e| anyhow!("{e}"))?;
    let mut session = Session::builder(&env)
        .and_then(|b| b.with_intra_threads(1).map_err(Into::into))
        .and_then(|b| b.with_inter_threads(1).map_err(Into::into))
        .map_err(|e| anyhow!("{e}"))?
        .commit_from_file(&args[2])
        .map_err(|e| anyhow!("{}: {e}", args[2]))?;
    let has_ids = session.inputs().iter().any(|i| i.name() == "input_ids");
    let inputs: Vec<(String, DynValue)> = session
        .inputs()
        .iter()
        .map(|i| Ok((i.name().to_string(), input(i.name(), i.dtype(), &sizes, has_ids)?)))
        .collect::<Result<_>>()?;
    for _ in 0..runs {
        let feed: Vec<(&str, SessionInputValue)> =
            inputs.iter().map(|(n, v)| (n.as_str(), SessionInputValue::from(v))).collect();
        session.run(feed).map_err(|e| anyhow!("run: {e}"))?;
    }
    Ok(())
}
