//! # visage-backend: consented enrollment, recognition and erasure over PostgreSQL + pgvector
//!
//! Layout (after *Zero to Production in Rust*):
//! - [`configuration`]: command-line and environment settings of every command;
//! - [`embedded`]: the project-local PostgreSQL with pgvector used when `DATABASE_URL` is unset;
//! - [`db`]: connection pool and migrations;
//! - [`startup`]: builds the axum application; [`state`]: what the handlers share;
//!   [`routes`]: one module per resource;
//! - [`store`]: every SQL statement, one module per table group (checked at compile time);
//! - [`domain`]: parse-don't-validate request types; [`error`]: the one API error type;
//! - [`auth`]: API keys, scopes and rate limits; [`pipeline`]: the face pipeline off the runtime;
//! - [`telemetry`]: tracing and Prometheus metrics; [`commands`]: what the `visage` binary runs;
//! - [`web`]: the browser app's static files at `/`; [`cors`]: cross-origin API access.

pub mod auth;
pub mod commands;
pub mod configuration;
pub mod cors;
pub mod db;
pub mod domain;
pub mod embedded;
pub mod enroll;
pub mod error;
pub mod once_per;
pub mod openapi;
pub mod oracle;
pub mod pipeline;
pub mod purge;
pub mod replicas;
pub mod routes;
pub mod scrub;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod web;
