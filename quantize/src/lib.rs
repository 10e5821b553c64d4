//! owlet-quantize: fp32 bundles to int8 / fp16 (issue 6). Not implemented yet:
//! the binary says so and exits with an error rather than writing a bundle that
//! only pretends to be quantized.
