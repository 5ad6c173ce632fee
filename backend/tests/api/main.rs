//! Integration tests: the real app on a random port against a fresh database on the embedded
//! PostgreSQL (or on the server of `DATABASE_URL`).

mod bad_input;
mod collections;
mod concurrency;
mod cors;
mod db_loss;
mod enroll_cli;
mod enroll_recognize;
mod erasure_disk;
mod graphs;
mod health;
mod helpers;
mod images;
mod people;
mod replicas;
mod security;
mod web;
