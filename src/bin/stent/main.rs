//! `stent`: list, show, delete, purge and count the results stent keeps, in any store.
//!
//! ```text
//! stent --store sqlite://stent.db cache ls --prefix 'fx::'
//! stent idempotency show 'billing::charge_customer|v1|charge:ord-1'
//! stent --store redis://127.0.0.1:6379 --json stats
//! ```

mod cli;
mod commands;
mod failure;
mod output;
mod term;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    let store_url = args.store.clone();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.to_line(&store_url));
            ExitCode::FAILURE
        }
    }
}
