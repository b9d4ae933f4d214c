//! Proofs beyond the conformance suite, against the server in `STENT_POSTGRES_URL` and
//! against PostgreSQL servers the tests start (and stop) themselves.

mod bad_input;
mod outage;
mod statements;
#[path = "../support/mod.rs"]
mod support;
mod wire;

use stent_conformance::servers::local::{self, PostgresServer};

/// The superuser's password on the servers these tests start.
const PASSWORD: &str = "pw-Sekr1t-4711";

/// A server of the test's own whose superuser needs [`PASSWORD`] over TCP, or `None`
/// after a loud skip (a failure under `STENT_REQUIRE_BACKENDS=1`).
fn own_server(test: &str) -> Option<PostgresServer> {
    local::or_skip(test, PostgresServer::with_password(PASSWORD))
}

/// A URL of `server`'s `postgres` database for the superuser with `password`.
fn url_with(server: &PostgresServer, password: &str) -> String {
    format!(
        "postgres://postgres:{password}@127.0.0.1:{}/postgres",
        server.port()
    )
}
