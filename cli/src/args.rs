//! Command-line arguments of `owlet` (one convention across owlet's binaries:
//! `--model BUNDLE`, `--json`, `--threads N`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use owlet_runtime::device::{DeviceChoice, GpuPrecision};

#[derive(Parser, Debug)]
#[command(
    name = "owlet",
    version,
    about = "Run CLIP and BLIP-2 model bundles from the shell: embeddings, zero-shot labels, captions, questions"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Model bundle folder (the one with owlet.toml).
    #[arg(long, short = 'm', value_name = "BUNDLE")]
    pub model: PathBuf,
    /// Threads for matrix products [default: all cores].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Where the graphs run: cpu, cuda (an NVIDIA GPU, in builds with the cuda-12 or
    /// cuda-13 feature) or auto (cuda when built in and a GPU answers).
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// The float type the GPU computes in.
    #[arg(long, value_enum, default_value_t = GpuPrecision::F32)]
    pub gpu_precision: GpuPrecision,
}

/// How BLIP-2 chooses tokens (transformers' generate() options).
#[derive(Args, Debug, Clone)]
pub struct GenArgs {
    /// Beam search with N beams (1 = greedy).
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = beam_count)]
    pub beams: usize,
    /// Most tokens to generate [default: the bundle's].
    #[arg(long, value_name = "N")]
    pub max_new_tokens: Option<usize>,
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub min_new_tokens: usize,
    /// Beam scores are divided by length^P; > 0 favours longer answers.
    #[arg(long, default_value_t = 1.0, value_name = "P")]
    pub length_penalty: f32,
    /// > 1 discourages repeating tokens.
    #[arg(long, default_value_t = 1.0, value_name = "P")]
    pub repetition_penalty: f32,
    /// Sample instead of searching (with --temperature, --top-k, --top-p, --seed).
    #[arg(long, conflicts_with = "beams")]
    pub sample: bool,
    #[arg(long, default_value_t = 1.0, requires = "sample")]
    pub temperature: f32,
    #[arg(long, default_value_t = 50, requires = "sample")]
    pub top_k: usize,
    #[arg(long, default_value_t = 1.0, requires = "sample")]
    pub top_p: f32,
    #[arg(long, default_value_t = 0, requires = "sample")]
    pub seed: u64,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Embedding vectors of images or texts (L2-normalised).
    Embed {
        #[command(flatten)]
        common: Common,
        /// Image files.
        #[arg(value_name = "IMAGE", required_unless_present = "text", conflicts_with = "text")]
        images: Vec<PathBuf>,
        /// Texts to embed instead of images.
        #[arg(long, num_args = 1.., value_name = "T")]
        text: Vec<String>,
    },
    /// Cosine similarity of every image with every text, and per image the
    /// probability of each text.
    Similarity {
        #[command(flatten)]
        common: Common,
        #[arg(long, num_args = 1.., required = true, value_name = "IMAGE")]
        images: Vec<PathBuf>,
        #[arg(long, num_args = 1.., required = true, value_name = "T")]
        texts: Vec<String>,
    },
    /// Zero-shot classification of images against a list of labels.
    Classify {
        #[command(flatten)]
        common: Common,
        /// Comma-separated labels, e.g. "cat,dog,car".
        #[arg(long, required = true)]
        labels: String,
        /// Prompt template with {} for the label; repeat to average several.
        #[arg(long = "template", value_name = "TEMPLATE")]
        templates: Vec<String>,
        /// How many labels to show per image in the table.
        #[arg(long, default_value_t = 5)]
        top: usize,
        #[arg(value_name = "IMAGE", required = true)]
        images: Vec<PathBuf>,
    },
    /// Token ids and tokens of a text, as the model sees it.
    Tokenize {
        #[command(flatten)]
        common: Common,
        text: String,
    },
    /// Caption images with BLIP-2.
    Caption {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        gen: GenArgs,
        /// Text the caption continues (default: the bundle's caption prompt, "").
        #[arg(long)]
        prompt: Option<String>,
        #[arg(value_name = "IMAGE", required = true)]
        images: Vec<PathBuf>,
    },
    /// Ask BLIP-2 a question about an image ("Question: ... Answer:").
    Ask {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        gen: GenArgs,
        image: PathBuf,
        question: String,
    },
    /// Talk about one image: questions from stdin, one per line; answers stream out.
    /// Earlier turns are remembered. An empty line or end of input ends the chat.
    Chat {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        gen: GenArgs,
        image: PathBuf,
    },
    /// Build an embedding index of images, for search and clustering.
    Index {
        #[command(subcommand)]
        action: IndexCommand,
    },
    /// Find the stored images or frames closest to a text or an image.
    Search {
        #[command(flatten)]
        common: Common,
        /// The history: a folder (its history.db; an older owlet's index there is
        /// imported) or a .db file, as the bridge keeps under its state folder.
        #[arg(long, value_name = "DIR|FILE")]
        index: PathBuf,
        /// What to look for, in words.
        #[arg(required_unless_present = "image", conflicts_with = "image")]
        text: Option<String>,
        /// Look for images like this one instead.
        #[arg(long, value_name = "IMG")]
        image: Option<PathBuf>,
        #[arg(long, short = 'k', default_value_t = 10)]
        k: usize,
        #[command(flatten)]
        only: SearchFilter,
    },
    /// Group the stored images (k-means++) and name each group by its closest keywords.
    Cluster {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_name = "DIR|FILE")]
        index: PathBuf,
        #[arg(long, short = 'k')]
        k: usize,
        /// One keyword or phrase per line; each cluster is named by its best matches.
        #[arg(long, value_name = "FILE")]
        keywords: Option<PathBuf>,
        /// Write a contact sheet: one row of thumbnails per cluster.
        #[arg(long, value_name = "OUT.png")]
        sheet: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// What this build can run on: the CUDA libraries, driver, headers and kernel
    /// cache it finds, and for each bundle given, which of its nodes would stay on
    /// the CPU. Exits 1 when --device cuda could not be used.
    Doctor {
        /// Bundles to prepare on the GPU, listing the nodes that fall back to the CPU.
        #[arg(long = "model", short = 'm', value_name = "BUNDLE")]
        models: Vec<PathBuf>,
        /// Compile tract's CUDA kernels into the cache now (the first GPU use
        /// otherwise spends ~100 s on it).
        #[arg(long)]
        warm: bool,
        #[arg(long, value_enum, default_value_t = GpuPrecision::F32)]
        gpu_precision: GpuPrecision,
        #[arg(long)]
        json: bool,
    },
    /// Time the bundle's graphs here: CLIP's image and text encoders, BLIP-2's image
    /// encoder and decoder steps (median of --runs), at each --batch, on --device.
    Bench {
        #[command(flatten)]
        common: Common,
        /// Batch sizes (images for the encoders; rows, as beams, for decoder steps).
        #[arg(long, value_delimiter = ',', default_values_t = [1usize, 8])]
        batch: Vec<usize>,
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Decoder steps timed per run (after a prefill of the image queries and a prompt).
        #[arg(long, default_value_t = 16)]
        steps: usize,
        /// Also show where each figure's time went: time per kind of op (tract's
        /// and owlet's), per run, heaviest first. Timing each op costs a little.
        #[arg(long)]
        profile: bool,
    },
    /// Write the model's view of an image (resized and cropped) as PNG.
    Preprocess {
        #[command(flatten)]
        common: Common,
        image: PathBuf,
        #[arg(short = 'o', long = "output", value_name = "OUT.png")]
        output: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum IndexCommand {
    /// Embed image files (or every image in folders) and store them in the history.
    Add {
        #[command(flatten)]
        common: Common,
        /// A folder (its history.db; an older owlet's index there is imported) or a
        /// .db file.
        #[arg(long, value_name = "DIR|FILE")]
        index: PathBuf,
        /// Storage of the vectors of a new history: f32, f16 (half the memory) or
        /// int8 (a quarter).
        #[arg(long, default_value = "f32")]
        precision: String,
        /// Images embedded per model call.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Camera name to record with the entries.
        #[arg(long)]
        camera: Option<String>,
        /// Longest side of the JPEG thumbnail stored with each image (0: none).
        #[arg(long, default_value_t = 160, value_parser = clap::value_parser!(u32).range(0..=1024))]
        thumbnail_px: u32,
        /// Keep the history under this many MiB (oldest go first); default: no limit.
        #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..))]
        max_mb: Option<u64>,
        #[arg(value_name = "FILES|DIR", required = true)]
        paths: Vec<PathBuf>,
    },
}

/// What a search looks at; every option narrows it (in SQL, before the vectors).
#[derive(Args, Debug, Clone, Default)]
pub struct SearchFilter {
    /// Only frames of this camera.
    #[arg(long)]
    pub camera: Option<String>,
    /// Only frames where this label scored at least --min-score.
    #[arg(long)]
    pub label: Option<String>,
    #[arg(long, default_value_t = 0.5, requires = "label")]
    pub min_score: f32,
    /// Only frames whose caption contains these words (case-insensitive).
    #[arg(long, value_name = "WORDS")]
    pub caption: Option<String>,
    /// Only frames at or after this time (milliseconds since 1970).
    #[arg(long, value_name = "MS")]
    pub since_ms: Option<u64>,
    /// Only frames at or before this time (milliseconds since 1970).
    #[arg(long, value_name = "MS")]
    pub until_ms: Option<u64>,
}

/// `--beams`: 1 (greedy) to 64.
fn beam_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n @ 1..=64) => Ok(n),
        _ => Err(format!("{s:?}: give 1 (greedy) to 64 beams")),
    }
}
