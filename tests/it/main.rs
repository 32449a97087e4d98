//! Integration tests: one binary, one module per story.
//!
//! Fixtures under `tests/fixtures/postfix/` were captured from a real
//! Postfix by `tests/fixtures/postfix/generate.sh`; the expected numbers
//! come from that script's manifest (what it sent and what its test servers
//! answered), never from this program's output.

mod access;
mod attacks;
mod backends;
mod bad_input;
mod browser;
mod chart;
mod cli;
mod connections;
mod e2e;
mod faults;
mod fixtures;
mod idempotence;
mod layout;
mod migration;
mod nightly;
mod order;
mod partitions;
mod pdf;
mod received;
mod replies;
mod report;
mod resume;
mod smtp_server;
mod support;
mod visible;
mod web;
