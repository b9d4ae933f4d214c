//! The fault matrix: every scenario against every backend, each in processes of its own.
//! `RELIABILITY.md` at the repository root reports the figures these tests print
//! (`FIGURE …` lines on stderr; run with `--no-capture` to see them).

mod crash_takeover;
mod expiry_storm;
mod long_running;
mod many_processes;
mod network_faults;
mod server_restart;
mod support;
mod transactional;
