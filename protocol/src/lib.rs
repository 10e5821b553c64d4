//! owlet-protocol: the bridge's MQTT contract. Every topic (`topics`), the command
//! payloads and their checks (`commands`), the fleet's requests and answers
//! (`fleet`), every payload the bridge publishes (`payloads`, with their JSON
//! Schemas), the names that travel in both (`names`). Only serde and schemars: the
//! fuzzers build it without the models.

pub mod commands;
pub mod fleet;
pub mod names;
pub mod payloads;
pub mod topics;
