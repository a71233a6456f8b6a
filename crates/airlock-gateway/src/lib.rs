//! The HTTP gateway that coding agents are pointed at, and its request pipeline.
//!
//! `airlock serve` runs a [`Gateway`]: agents send their model API requests (Anthropic
//! Messages, OpenAI Chat Completions and Responses, Gemini) to it instead of the vendor; it
//! authenticates the caller (Airlock keys, or anonymous mode on loopback), identifies the agent
//! and its version, asks the policy whether the request may go, forwards it byte for byte to the
//! configured upstream and streams the answer back frame by frame. The stages are in
//! [`pipeline`]; errors the gateway makes itself are written in the caller's API shape
//! ([`api`]) and say who caused them.
//!
//! At the inspect stage every model API request (Anthropic Messages, OpenAI Chat and
//! Responses) goes through `airlock-wire` with the built-in `airlock-detect` engine and the
//! `[redaction]` policy: secrets become deterministic placeholders, covert Unicode is removed,
//! a `block` action answers 403 in the API's shape; placeholders in the response are restored
//! ([`redact`]) before the agent sees them. Every exchange writes one `airlock-audit` record;
//! the end of a completed response is released only once that record is committed.
//!
//! What it does not do: know wire formats or detection rules itself (`airlock-wire`,
//! `airlock-detect`), store or verify audit records (`airlock-audit`), or decide policy itself
//! (`airlock-policy`). Gemini request bodies are not inspected yet. It terminates no TLS on the
//! listening side: put it behind a TLS proxy, or keep it on loopback, when agents run elsewhere.

pub mod admin;
pub mod api;
pub mod budget;
pub mod keys;
pub mod metrics;
pub mod pipeline;
pub mod redact;
pub mod runtime;
pub mod secret;
pub mod server;
pub mod throttle;
pub mod tls;
pub mod upstream;

pub use keys::{KeyInfo, KeyStore, NewKey};
pub use runtime::{ConfigSource, Runtime, RuntimeError};
pub use secret::Secret;
pub use server::{Gateway, GatewayError};
