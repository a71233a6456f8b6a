//! Configuration, the agent catalogue, advisories, agent identification and policy decisions.
//!
//! Every part of Airlock answers the same question — *may this tool, at this version, used by
//! this person, talk to this model?* — so the answer lives here, once:
//!
//! - [`Catalogue`]: the known AI coding agents (`rules/agents.toml`): how to recognise them in a
//!   request, where they install, how to run them. Used by the gateway, inventory, probe and
//!   review.
//! - [`Advisories`]: known-bad releases (`rules/advisories.toml`).
//! - [`Config`]: `airlock.toml`, with an embedded default so that every command runs without a
//!   file. Errors name the key and the line.
//! - [`Policy`]: the compiled decision rules; [`Policy::decide`] gives a [`Decision`] with a
//!   message written for the person who is refused.
//!
//! This crate does no I/O beyond reading a config file on request and no networking; it has no
//! async code, so that command-line tools can use it cheaply.

mod advisories;
mod catalogue;
mod config;
mod decide;
mod error;
pub mod glob;
pub mod paths;

pub use advisories::{Advisories, Advisory, AdvisorySeverity};
pub use catalogue::{Agent, Catalogue, IdentifyRule, Identity, ProbeSpec, RoutingSetting};
pub use config::EMBEDDED_DEFAULT_CONFIG;
pub use config::{
    AuditConfig, AuditOverflow, Config, Credential, ModelEntry, PolicyConfig, PolicyRule,
    RuleAction, ServerConfig, UnknownTools, UpstreamApi, UpstreamConfig,
};
pub use decide::{Decision, Policy, Subject};
pub use error::{ConfigError, ConfigIssue, PolicyError};
