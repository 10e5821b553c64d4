//! The choices a user names in a config file or on the command line: where models
//! run, in what precision, and how an index stores its vectors.

use serde::{Deserialize, Serialize};

/// Where the models run, as asked for (`--device`, `[compute] device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    Cpu,
    Cuda,
    /// CUDA when built in and usable, else the CPU.
    #[default]
    Auto,
}

/// The float type a graph computes in. On the GPU, what `--gpu-precision` asks for:
/// fp16 halves memory traffic and runs matrix products on tensor cores. On the CPU,
/// f16 only for fp16 bundles on CPUs with f16 arithmetic, else f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum GpuPrecision {
    #[default]
    F32,
    F16,
}

/// How a search index stores its vectors (`index.json`'s `precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VectorPrecision {
    F32,
    F16,
    /// One byte per value and an f32 scale per vector: a quarter of f32's memory.
    I8,
}

impl VectorPrecision {
    /// `f32`/`fp32`, `f16`/`fp16` or `i8`/`int8`; the error says what is accepted.
    pub fn parse(s: &str) -> Result<VectorPrecision, String> {
        match s {
            "f32" | "fp32" => Ok(VectorPrecision::F32),
            "f16" | "fp16" => Ok(VectorPrecision::F16),
            "i8" | "int8" => Ok(VectorPrecision::I8),
            _ => Err(format!("precision {s:?}: use f32, f16 or int8")),
        }
    }

    /// The name it is stored under (`index.json`, the history's spaces).
    pub fn name(self) -> &'static str {
        match self {
            VectorPrecision::F32 => "f32",
            VectorPrecision::F16 => "f16",
            VectorPrecision::I8 => "i8",
        }
    }

    /// Bytes one vector of `dim` values takes.
    pub fn vector_bytes(self, dim: usize) -> usize {
        match self {
            VectorPrecision::F32 => 4 * dim,
            VectorPrecision::F16 => 2 * dim,
            VectorPrecision::I8 => dim + 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_precision_parses_and_others_are_named() {
        for (s, p) in [
            ("fp32", VectorPrecision::F32),
            ("f16", VectorPrecision::F16),
            ("int8", VectorPrecision::I8),
        ] {
            assert_eq!(VectorPrecision::parse(s), Ok(p));
            // Its stored name parses back.
            assert_eq!(VectorPrecision::parse(p.name()), Ok(p));
        }
        assert_eq!(
            VectorPrecision::parse("q4").unwrap_err(),
            "precision \"q4\": use f32, f16 or int8"
        );
        assert_eq!(VectorPrecision::I8.vector_bytes(16), 20);
    }
}
