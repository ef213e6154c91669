//! Every integration test, in one binary (one link of the AWS SDK instead of
//! one per file). Each module is one concern; test names are sentences.

mod console;
mod contract;
mod conversions;
mod deliver;
mod faults;
mod ingest;
mod isolation;
mod lambda_events;
mod logs;
mod openapi;
mod operability;
mod partner;
mod recover;
mod reliability;
mod seeds;
mod transactions;
