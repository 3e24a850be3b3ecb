//! The CLI commands other than `serve`.

pub mod pay;
pub mod token_cmd;
pub mod wallet_cmd;
