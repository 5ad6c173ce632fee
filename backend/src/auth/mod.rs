//! API keys (`Authorization: Bearer vsg_...`), stored as sha256 digests, with scopes and
//! per-key rate limits.
//!
//! - `secret`: generating keys and other secrets, their digests, constant-time comparison;
//! - `keys`: creating, bootstrapping, listing, revoking and rotating keys;
//! - `caller`: the [`Caller`] and [`MaybeCaller`] extractors that authenticate a request;
//! - `limits`: per-key rate limits and the failed-authentication throttle;
//! - `withdrawal`: checking a data subject's withdrawal token.

mod caller;
mod keys;
mod limits;
mod secret;
mod withdrawal;

pub use crate::store::keys::KeyInfo;
pub use caller::{Caller, MaybeCaller, client_ip};
pub use keys::{
    MIN_BOOTSTRAP_KEY_DISTINCT, MIN_BOOTSTRAP_KEY_LEN, NewKey, RotatedKey, WeakKey,
    check_key_strength, create_key, create_key_with, ensure_key, list_keys, revoke_key, rotate_key,
};
pub use limits::{FailedAuth, RateLimits};
pub use secret::{KEY_PREFIX, constant_time_eq, generate_key, generate_secret, hash_key};
pub use withdrawal::check_withdrawal_token;
