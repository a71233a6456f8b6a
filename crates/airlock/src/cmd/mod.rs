//! One module per subcommand.

pub mod audit;
pub mod config;
pub mod inventory;
pub mod keys;
pub mod probe;
pub mod review;
pub mod scan;
pub mod serve;
