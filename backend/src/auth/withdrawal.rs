//! Withdrawal tokens: a data subject's credential for withdrawing their own consent, checked
//! against the digest stored with the person and throttled like a wrong API key.

use std::net::IpAddr;

use uuid::Uuid;

use super::secret::{constant_time_eq, hash_key};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store;

/// Checks a data subject's withdrawal token for person `id` (its digest is stored at
/// creation), counting a wrong one as a failed authentication of `ip`. An unknown person and a
/// wrong token get the same 401: a token guesser learns nothing about which ids exist.
pub async fn check_withdrawal_token(
    state: &AppState,
    ip: IpAddr,
    id: Uuid,
    token: &str,
) -> Result<(), ApiError> {
    state.failed_auth.check(ip)?;
    let stored = store::people::withdrawal_token_sha256(&state.pool, id).await?;
    let ok = stored
        .flatten()
        .is_some_and(|sha| token.len() <= 200 && constant_time_eq(&sha, &hash_key(token)));
    if !ok {
        state.failed_auth.record(ip);
        return Err(ApiError::Unauthorized(
            "unknown person or wrong withdrawal token".into(),
        ));
    }
    Ok(())
}
