pub mod sloppy;
pub mod utf8_variants;
