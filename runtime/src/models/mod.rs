//! Model pipelines built on bundles: what each model family does with its graphs.

pub mod clip;
pub mod blip2;
