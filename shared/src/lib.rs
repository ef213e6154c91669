//! The library both lambdas and the local runner are thin wrappers around:
//! domain types and validation, macro templates, the DynamoDB store, the SQS
//! queue, the HTTP sender, the retry schedule and configuration.

pub mod admin_keys;
pub mod app;
pub mod auth;
pub mod backoff;
pub mod breaker;
pub mod cache;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod endpoint;
pub mod error;
pub mod fanout;
pub mod fields;
pub mod ids;
pub mod inbound;
pub mod lifecycle;
pub mod macros;
pub mod metrics;
pub mod money;
pub mod outbox;
pub mod queue;
pub mod recovery;
pub mod render;
pub mod schedule;
pub mod sealing;
pub mod sender;
pub mod store;
pub mod telemetry;
pub mod template;
pub mod tracking;

/// Every binary built on this library (the functions, the local runner, the
/// tests) allocates with mimalloc: `perf` of the release runner put a sixth
/// of the service's CPU in glibc's malloc and free.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub use app::App;
pub use error::{Error, Result};
