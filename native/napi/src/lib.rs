//! The `@novacron/native` addon. It converts JS values to core types and forwards calls; no
//! domain logic lives here. Errors cross as `CODE: message` and the TS facade turns the prefix
//! into the error's `code`.

mod acp;
mod chunking;
mod decoder;
mod encoder;
mod error;
mod exclusive;
mod frames;
mod migration;
mod options;
mod store;
mod transport;
mod transport_options;
mod work;
