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
//! What it does not do: parse or rewrite prompt content (that is `airlock-wire`, plugged in at
//! the inspect stage), keep the audit trail (`airlock-audit`, plugged in where an exchange is
//! recorded), or decide policy itself (`airlock-policy`). It terminates no TLS on the listening
//! side: put it behind a TLS proxy, or keep it on loopback, when agents run elsewhere.

pub mod api;
pub mod keys;
pub mod metrics;
pub mod pipeline;
pub mod runtime;
pub mod secret;
pub mod server;
pub mod upstream;

pub use keys::{KeyInfo, KeyStore, NewKey};
pub use runtime::{ConfigSource, Runtime, RuntimeError};
pub use secret::Secret;
pub use server::{Gateway, GatewayError};
