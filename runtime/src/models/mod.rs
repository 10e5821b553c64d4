//! Model pipelines built on bundles: what each model family does with its graphs.

pub mod blip2;
pub mod clip;
