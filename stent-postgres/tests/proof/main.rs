//! Proofs beyond the conformance suite, against the server in `STENT_POSTGRES_URL` and
//! against PostgreSQL servers the tests start (and stop) themselves.

mod bad_input;
mod cluster;
mod outage;
mod processes;
mod statements;
#[path = "../support/mod.rs"]
mod support;
