//! The command line.
//!
//! ```text
//! paygress serve --config FILE --listen ADDR:PORT --data-dir DIR
//! paygress wallet balance [--data-dir DIR]
//! paygress wallet send    [--data-dir DIR] --mint URL --amount N
//! paygress wallet melt    [--data-dir DIR] --mint URL --invoice BOLT11
//! paygress wallet fund    [--data-dir DIR] --mint URL --amount N
//! paygress token decode TOKEN
//! paygress pay URL [--data-dir DIR]
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The default data dir of the wallet commands.
pub const DEFAULT_DATA_DIR: &str = ".paygress";

#[derive(Debug, Parser)]
#[command(
    name = "paygress",
    version,
    about = "Cashu ecash payments in front of HTTP services: the verifier and its wallet"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the verifier: GET /auth, /healthz, /readyz, /metrics.
    Serve(ServeArgs),
    /// The verifier's wallet: balance, send, melt, fund.
    Wallet {
        #[command(subcommand)]
        command: WalletCommand,
    },
    /// Cashu tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Requests URL; on 402 pays the Cashu payment request from the wallet and retries once.
    Pay(PayArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The config file (JSON, or YAML by extension); environment overrides apply.
    #[arg(long, env = "PAYGRESS_CONFIG")]
    pub config: Option<PathBuf>,
    /// The address to listen on.
    #[arg(long, env = "PAYGRESS_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Where the wallet store and the seed live.
    #[arg(long, env = "PAYGRESS_DATA_DIR")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct DataDirArg {
    /// Where the wallet store and the seed live.
    #[arg(long, env = "PAYGRESS_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum WalletCommand {
    /// Prints the balance per mint and unit (JSON).
    Balance {
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Prints a cashuB token of AMOUNT from the wallet's proofs of MINT.
    Send {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        mint: String,
        #[arg(long)]
        amount: u64,
        #[arg(long, default_value = "sat")]
        unit: String,
    },
    /// Pays a BOLT11 invoice from the wallet's proofs of MINT.
    Melt {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        mint: String,
        #[arg(long)]
        invoice: String,
        #[arg(long, default_value = "sat")]
        unit: String,
    },
    /// Asks MINT for an invoice of AMOUNT, prints it, waits until it is paid and mints.
    Fund {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        mint: String,
        #[arg(long)]
        amount: u64,
        #[arg(long, default_value = "sat")]
        unit: String,
        /// How long to wait for the invoice to be paid.
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Prints a token's mint, unit, amounts and total as JSON (never its
    /// secrets), or what a payment request (creqA…, a 402's X-Cashu) asks for.
    Decode {
        /// The token (cashuA… or cashuB…) or payment request (creqA…); `-` reads it from stdin.
        token: String,
    },
}

#[derive(Debug, Args)]
pub struct PayArgs {
    /// The URL to request.
    pub url: String,
    #[command(flatten)]
    pub dir: DataDirArg,
    /// Extra request headers, `Name: value`.
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    /// The request method.
    #[arg(long, short = 'X', default_value = "GET")]
    pub method: String,
}
