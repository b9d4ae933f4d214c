//! `stent`: list, show, delete, purge and count the results stent keeps, in any store
//! (`stent --store sqlite://stent.db cache ls --prefix 'fx::'`; see the README).

mod commands;
mod open;
mod output;

use std::process::ExitCode;

use clap::{Args as ClapArgs, Parser, Subcommand};

/// Inspect and clean the results stent keeps, in any store.
#[derive(Debug, Parser)]
#[command(name = "stent", version)]
#[command(after_help = "Exit status: 0 on success, 1 on error, 2 on a usage error.")]
struct Args {
    /// The store's URL.
    ///
    /// sqlite://stent.db, postgres://user@host/db, redis://host:6379,
    /// redis+cluster://h1:p1,h2:p2, dynamodb://TABLE?endpoint=…&region=…, memory://; with
    /// ?table_prefix=P (SQLite, PostgreSQL), ?schema=S (PostgreSQL) or ?prefix=P (Redis,
    /// DynamoDB) for a store built with one.
    #[arg(long, global = true, env = "STENT_STORE", hide_env_values = true)]
    #[arg(default_value = "sqlite://stent.db", value_name = "URL")]
    store: String,

    /// Print one JSON document instead of a table.
    #[arg(long, global = true)]
    json: bool,

    /// Do not ask before deleting or releasing anything.
    #[arg(long, short = 'y', global = true)]
    yes: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Cached results (the `cache` namespace).
    #[command(subcommand)]
    Cache(RecordCommand),
    /// Results of idempotent calls (the `idempotency` namespace).
    #[command(subcommand)]
    Idempotency(IdempotencyCommand),
    /// Counts per namespace and state, value bytes, expired records not yet purged.
    Stats,
    /// The progress log of one execution (`Stent::run_execution`): each step and its status.
    Progress {
        /// The execution id given to `run_execution`.
        execution: String,
    },
}

/// What both namespaces offer.
#[derive(Debug, Subcommand)]
enum RecordCommand {
    /// List records in key order.
    Ls(LsArgs),
    /// Show one record: state, timestamps, attempt, size and its decoded value.
    Show(KeyArg),
    /// Delete one record, whatever its state; or, with --function, every record of a
    /// function (of one version with --version).
    Rm(RmArgs),
    /// Delete every record of the namespace.
    Clear,
    /// Delete the records whose expiry has passed.
    Purge,
}

#[derive(Debug, Subcommand)]
enum IdempotencyCommand {
    #[command(flatten)]
    Record(RecordCommand),
    /// Free a stuck in-progress record so the next call runs at once.
    Release(KeyArg),
}

#[derive(Debug, ClapArgs)]
struct LsArgs {
    /// Only keys starting with this (matched literally).
    #[arg(long, default_value = "", hide_default_value = true)]
    prefix: String,
    /// Show at most this many records; 0 shows them all.
    #[arg(long, default_value_t = 100, value_name = "N")]
    limit: usize,
    /// Include expired records that are not purged yet.
    #[arg(long)]
    all: bool,
}

#[derive(Debug, ClapArgs)]
struct KeyArg {
    /// The record's full key, as `ls` shows it.
    key: String,
}

#[derive(Debug, ClapArgs)]
struct RmArgs {
    /// The record's full key, as `ls` shows it.
    #[arg(required_unless_present = "function", conflicts_with = "function")]
    key: Option<String>,
    /// Delete every record of the function with this name (keys `NAME|…`).
    #[arg(long, value_name = "NAME")]
    function: Option<String>,
    /// With --function: only the records of this version (keys `NAME|VERSION|…`).
    #[arg(long, requires = "function")]
    version: Option<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let Err(failure) = commands::run(&args).await else {
        return ExitCode::SUCCESS;
    };
    eprintln!("error: {}", failure.to_line(&args.store));
    ExitCode::FAILURE
}

/// An error for the user: printed as `error: {message}`, exit status 1.
#[derive(Debug)]
struct Failure(String);

impl Failure {
    /// The message as one line, with every form of the store URL's password masked.
    fn to_line(&self, store_url: &str) -> String {
        let line = self.0.replace(char::is_control, " ");
        stent::store::url_secrets(store_url)
            .iter()
            .fold(line, |line, secret| line.replace(secret.as_str(), "***"))
    }
}

impl From<stent::Error> for Failure {
    /// The error's sentence, then each cause in its chain that the line does not say yet.
    fn from(e: stent::Error) -> Self {
        let mut line = e.to_string();
        let causes = std::iter::successors(std::error::Error::source(&e), |c| c.source());
        for text in causes.map(|c| c.to_string()) {
            if !line.contains(&text) {
                line = format!("{line}: {text}");
            }
        }
        Failure(line)
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn passwords_are_masked_in_every_form() {
        let url = "postgres://u:p%40ss@host/db?password=other";
        let f = Failure("p%40ss p@ss other\nsecond line".into());
        assert_eq!(f.to_line(url), "*** *** *** second line");
        assert_eq!(Failure("fine".into()).to_line("sqlite://x.db"), "fine");
    }
}
