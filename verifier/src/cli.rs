//! The command line.
//!
//! ```text
//! paygress serve --config FILE --listen ADDR:PORT --data-dir DIR
//! paygress error-pages --config FILE --listen ADDR:PORT
//! paygress wallet balance [--data-dir DIR]
//! paygress wallet send    [--data-dir DIR] --mint URL --amount N
//! paygress wallet melt    [--data-dir DIR] --mint URL --invoice BOLT11
//! paygress wallet fund    [--data-dir DIR] --mint URL --amount N
//! paygress token decode TOKEN
//! paygress lease show PASS [--verifier URL]
//! paygress pay URL [--data-dir DIR] [--max-amount N] [--unit UNIT] [-H 'Name: value'] [-X METHOD]
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
    /// Serves ingress-nginx's custom error pages (its default backend): the
    /// 402 page or JSON of the path in X-Original-URI, by X-Code and X-Format.
    ErrorPages(ErrorPagesArgs),
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
    /// Leases: what a pass says.
    Lease {
        #[command(subcommand)]
        command: LeaseCommand,
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
    /// A PostgreSQL database (postgres://…) for the wallet store and the
    /// ledger, shared by every replica; needs PAYGRESS_MNEMONIC. Without it,
    /// SQLite in the data dir.
    #[arg(long, env = "PAYGRESS_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct ErrorPagesArgs {
    /// The verifier's config file (JSON, or YAML by extension); environment
    /// overrides apply. Pass key secrets are not read.
    #[arg(long, env = "PAYGRESS_CONFIG")]
    pub config: Option<PathBuf>,
    /// The address to listen on.
    #[arg(long, env = "PAYGRESS_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Args)]
pub struct DataDirArg {
    /// Where the wallet store and the seed live.
    #[arg(long, env = "PAYGRESS_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// The verifiers' shared PostgreSQL store (postgres://…) instead of the
    /// data dir; needs PAYGRESS_MNEMONIC.
    #[arg(long, env = "PAYGRESS_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

impl DataDirArg {
    /// Where the wallet lives.
    pub fn location(&self) -> crate::store::Location {
        crate::store::Location::new(&self.data_dir, self.database_url.as_deref())
    }
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
    /// Recovers from MINT, with the mnemonic, the proofs a replica derived
    /// (NUT-13 restore) into this data dir's store; prints what it found.
    Restore {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        mint: String,
        #[arg(long, default_value = "sat")]
        unit: String,
        /// The replica whose proofs to recover ("" for the mnemonic's own
        /// seed); default: this data dir's replica. Each data dir lists the
        /// ids it used in its `replica` file.
        #[arg(long)]
        replica_id: Option<String>,
    },
    /// Writes a consistent copy of the data dir (wallet and ledger stores,
    /// seed, replica file) into TO, while the verifier runs; prints the
    /// files (JSON). TO is created 0700, its files 0600; nothing is
    /// overwritten. Restore: stop the verifier, copy them into an empty
    /// data dir.
    Backup {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        to: PathBuf,
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

#[derive(Debug, Subcommand)]
pub enum LeaseCommand {
    /// Prints what a lease's pass says as JSON: lease, tier, payer, pod, key
    /// id, expiry, time left. Offline the pass is only decoded (its signature
    /// not checked); with --verifier it is checked by the verifier's GET /lease.
    Show {
        /// The pass (p1.…, from X-Paygress-Pass or the paygress_pass cookie); `-` reads it from stdin.
        pass: String,
        /// The verifier's address (`http://host:port`): asks its GET /lease,
        /// which checks the signature and knows the latest expiry.
        #[arg(long)]
        verifier: Option<String>,
    },
}

// `paygress pay`: what to request and how much it may spend. (No doc
// comment: it would replace the command's `about`.)
#[derive(Debug, Args)]
#[command(after_help = PAY_AFTER_HELP)]
pub struct PayArgs {
    /// The URL to request.
    pub url: String,
    #[command(flatten)]
    pub dir: DataDirArg,
    /// The extra request headers and the spending limits.
    #[command(flatten)]
    pub options: PayOptions,
    /// The request method.
    #[arg(long, short = 'X', default_value = "GET")]
    pub method: String,
}

/// The options of `paygress pay` besides the URL, the data dir and the method.
#[derive(Debug, Clone, Args)]
pub struct PayOptions {
    /// Extra request headers, `Name: value`. The credentials among them
    /// (Authorization, Proxy-Authorization, Cookie, X-Cashu, X-Paygress-Pass,
    /// any value holding a Cashu token or a pass) are dropped when a redirect
    /// leads to another origin.
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    /// The most one payment may take from the wallet, in --unit, the mint's
    /// input fees included. A 402 asking more is refused and nothing is spent.
    #[arg(
        long,
        env = "PAYGRESS_PAY_MAX_AMOUNT",
        default_value_t = crate::commands::pay::DEFAULT_MAX_AMOUNT
    )]
    pub max_amount: u64,
    /// The unit the wallet pays in; a 402 asking for another unit is refused.
    #[arg(long, default_value = "sat")]
    pub unit: String,
}

const PAY_AFTER_HELP: &str = "\
Requests URL. On 402 Payment Required with a NUT-18 payment request in X-Cashu
(NUT-24), pays it from the wallet in --data-dir: retries, once, the URL that
answered 402 with `X-Cashu: <cashuB token>`. Prints the final status, headers
and body. Exits 0 on a 2xx answer, 1 otherwise.

Nothing is spent, and the command exits 1, when the 402 asks for more than
--max-amount (input fees included), for another unit than --unit, for no
amount, with no mint, from no mint this wallet holds enough at, or with a
NUT-10 locking condition.

Redirects: the unpaid request follows up to 10 redirects; one to another
origin (scheme, host, port) drops the credential headers. The token goes only
to the origin that answered 402: the paid request is sent to the URL that
answered 402, follows redirects within that origin only, and stops at a
redirect to another origin, which is printed and not followed (exit 1; the
token is printed on stderr in case the server did not redeem it).

Leases: a pass an answer hands over (X-Paygress-Pass, or the paygress_pass
cookie) is kept in <data dir>/passes.json (mode 0600) for its origin and its
cookie Path (else the URL's first segment, `/compute` for `/compute/x`), and
sent in X-Paygress-Pass to URLs of that origin under that path until it
expires. A request carrying a pass that gets 402 is paid as above, the token
sent together with the pass, which tops the lease up. A pass given with -H
'X-Paygress-Pass: …' is used instead of a kept one.";
