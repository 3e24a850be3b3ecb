//! The `paygress` binary.

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use paygress_verifier::cli::{Cli, Command, LeaseCommand, TokenCommand, WalletCommand};
use paygress_verifier::commands::{backup_cmd, lease_cmd, pay, token_cmd, wallet_cmd};
use paygress_verifier::{config, error_pages, seed, server, store};
use tracing_subscriber::EnvFilter;

/// The default log filter: the verifier at info, cdk's chatty wallet at warn.
const DEFAULT_LOG: &str = "info,cdk=warn,cdk_common=warn,cdk_sqlite=warn,cdk_sql_common=warn";

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(matches!(
        cli.command,
        Command::Serve(_) | Command::ErrorPages(_)
    ));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("paygress: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

fn init_logging(serving: bool) {
    let filter = std::env::var("PAYGRESS_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| {
            if serving {
                DEFAULT_LOG.to_string()
            } else {
                // cdk's store warns about slow queries on a busy disk: not
                // the business of someone running a wallet command.
                "warn,cdk_sql_common=error".to_string()
            }
        });
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(args) => {
            let settings = match config::load(args.config.as_deref(), &config::ProcessEnv) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("paygress: {e}");
                    tracing::error!("{e}");
                    return ExitCode::from(2);
                }
            };
            let mnemonic = std::env::var(seed::MNEMONIC_VAR)
                .ok()
                .filter(|v| !v.trim().is_empty());
            let location = store::Location::new(&args.data_dir, args.database_url.as_deref());
            match server::serve(settings, args.listen, location, args.data_dir, mnemonic).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("paygress: {e}");
                    tracing::error!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::ErrorPages(args) => {
            let config = match error_pages::load(args.config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("paygress: {e}");
                    tracing::error!("{e}");
                    return ExitCode::from(2);
                }
            };
            match error_pages::serve(config, args.listen).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("paygress: error pages on {}: {e}", args.listen);
                    tracing::error!("error pages on {}: {e}", args.listen);
                    ExitCode::FAILURE
                }
            }
        }
        Command::Wallet { command } => {
            let result = match command {
                WalletCommand::Balance { dir } => wallet_cmd::balance(&dir.location()).await,
                WalletCommand::Send {
                    dir,
                    mint,
                    amount,
                    unit,
                } => wallet_cmd::send(&dir.location(), &mint, &unit, amount).await,
                WalletCommand::Melt {
                    dir,
                    mint,
                    invoice,
                    unit,
                } => wallet_cmd::melt(&dir.location(), &mint, &unit, &invoice).await,
                WalletCommand::Restore {
                    dir,
                    mint,
                    unit,
                    replica_id,
                } => {
                    wallet_cmd::restore(&dir.location(), &mint, &unit, replica_id.as_deref()).await
                }
                WalletCommand::Backup { dir, .. } if dir.location().is_shared() => {
                    Err(anyhow::anyhow!(
                        "wallet backup copies the SQLite stores of a data dir; a PostgreSQL store \
                         is backed up with PostgreSQL's own tools (pg_dump, or continuous \
                         archiving), see docs/replicas.md"
                    ))
                }
                WalletCommand::Backup { dir, to } => {
                    backup_cmd::backup(&dir.data_dir, &to).map(|files| {
                        let files: Vec<String> =
                            files.iter().map(|f| f.display().to_string()).collect();
                        serde_json::json!({ "backup": to.display().to_string(), "files": files })
                            .to_string()
                    })
                }
                WalletCommand::Fund {
                    dir,
                    mint,
                    amount,
                    unit,
                    timeout_secs,
                } => {
                    wallet_cmd::fund(
                        &dir.data_dir,
                        &mint,
                        &unit,
                        amount,
                        Duration::from_secs(timeout_secs),
                        |invoice| eprintln!("pay this invoice:\n{invoice}"),
                    )
                    .await
                }
            };
            print_result(result)
        }
        Command::Token {
            command: TokenCommand::Decode { token },
        } => {
            let token = match arg_or_stdin(token, "token") {
                Ok(t) => t,
                Err(code) => return code,
            };
            print_result(token_cmd::decode_any(&token).map_err(anyhow::Error::from))
        }
        Command::Lease {
            command: LeaseCommand::Show { pass, verifier },
        } => {
            let pass = match arg_or_stdin(pass, "pass") {
                Ok(p) => p,
                Err(code) => return code,
            };
            print_result(lease_cmd::show(&pass, verifier.as_deref()).await)
        }
        Command::Pay(args) => {
            match pay::pay(&args.url, &args.dir.data_dir, &args.method, &args.options).await {
                Ok(outcome) => {
                    print!("{}", outcome.printed);
                    if (200..300).contains(&outcome.status) {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("paygress: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The argument, or stdin when it is `-`.
fn arg_or_stdin(value: String, what: &str) -> Result<String, ExitCode> {
    if value != "-" {
        return Ok(value);
    }
    let mut text = String::new();
    match std::io::stdin().read_to_string(&mut text) {
        Ok(_) => Ok(text),
        Err(e) => {
            eprintln!("paygress: cannot read the {what} from stdin: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

fn print_result(result: anyhow::Result<String>) -> ExitCode {
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("paygress: {e:#}");
            ExitCode::FAILURE
        }
    }
}
