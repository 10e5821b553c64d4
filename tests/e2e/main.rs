//! End to end: the real `owlet` binary on the test bundle, checked against the
//! transformers reference outputs beside it.

mod bridge;
mod browser;
mod cli;
mod fleet;
mod frigate;
mod hardware;
mod history;
mod home_assistant;
mod memory;
mod mqtt;
mod reliability;
mod sources;
mod web;
