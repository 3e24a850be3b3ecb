//! The CLI commands other than `serve`.

pub mod backup_cmd;
pub mod lease_cmd;
pub mod pay;
pub mod token_cmd;
pub mod wallet_cmd;
