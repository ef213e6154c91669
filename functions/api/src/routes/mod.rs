//! Route handlers, one module per resource.

pub mod admin;
pub mod clicks;
pub mod deliveries;
pub mod endpoints;
pub mod events;
pub mod health;
pub mod lists;
pub mod offers;
pub mod partners;
pub mod postback;
pub mod recoveries;
