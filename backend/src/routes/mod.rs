//! HTTP handlers, one module per resource.

pub mod collections;
pub mod common;
pub mod detect;
pub mod extract;
pub mod faces;
pub mod health;
pub mod keys;
pub mod people;
pub mod recognize;
