//! The authenticated caller of a request: the `Caller` and `MaybeCaller` extractors, which
//! check the `Authorization: Bearer` key, its scopes and its rate limit, and the client address
//! whose failures are throttled.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Query};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use uuid::Uuid;

use super::secret::hash_key;
use crate::domain::{CollectionName, CollectionScope, DEFAULT_COLLECTION_ID, Scope, Scopes};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store;

/// The client address of a request (the TCP peer; loopback when unknown, e.g. in-process).
pub fn client_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// The caller of a request, authenticated by its API key.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: Uuid,
    pub scopes: Scopes,
    /// The collections the key may use.
    pub collections: CollectionScope,
    /// The request's `collection` query parameter, as sent (checked when a route asks for
    /// the collection: routes that use none, such as detection, ignore it).
    pub requested_collection: RequestedCollection,
}

/// The `collection` query parameter that every route takes, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestedCollection {
    /// Not given.
    None,
    /// Given once.
    Named(String),
    /// Given twice, or in a query string that does not parse: refused when used, never
    /// guessed (a write must not land in a collection the caller did not mean).
    Malformed,
}

impl RequestedCollection {
    /// The name, if one is given and well-formed; 400 if it is not.
    pub fn check(&self) -> Result<Option<CollectionName>, ApiError> {
        match self {
            RequestedCollection::None => Ok(None),
            RequestedCollection::Named(name) => Ok(Some(CollectionName::parse(name)?)),
            RequestedCollection::Malformed => Err(ApiError::bad_request(
                "invalid_collection",
                "give the collection once, as ?collection=<name>",
            )),
        }
    }

    /// From a request's URI.
    pub fn of(uri: &axum::http::Uri) -> Self {
        let Ok(Query(pairs)) = Query::<Vec<(String, String)>>::try_from_uri(uri) else {
            return RequestedCollection::Malformed;
        };
        let mut named = pairs.into_iter().filter(|(k, _)| k == "collection");
        match (named.next(), named.next()) {
            (None, _) => RequestedCollection::None,
            (Some((_, v)), None) => RequestedCollection::Named(v),
            (Some(_), Some(_)) => RequestedCollection::Malformed,
        }
    }
}

impl Caller {
    /// Fails with 403 unless the key has `scope` (or admin).
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.allows(scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(scope.as_str()))
        }
    }

    /// Fails with 403 unless the key has one of `scopes`.
    pub fn require_any(&self, scopes: &[Scope]) -> Result<(), ApiError> {
        if scopes.iter().any(|s| self.scopes.allows(*s)) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                scopes.first().map(|s| s.as_str()).unwrap_or("admin"),
            ))
        }
    }

    /// Fails with 403 unless the key is an admin key of every collection: managing keys and
    /// collections is not for an admin of some collections only.
    pub fn require_global_admin(&self) -> Result<(), ApiError> {
        self.require(Scope::Admin)?;
        if self.collections == CollectionScope::All {
            Ok(())
        } else {
            Err(ApiError::NotPermitted(
                "only an admin key of every collection manages keys and collections",
            ))
        }
    }

    /// Whether the key has the admin scope.
    pub fn is_admin(&self) -> bool {
        self.scopes.allows(Scope::Admin)
    }

    /// The one collection this request works in (creating people, recognition): the one it
    /// names in `collection`, else the key's only collection, else (a key of every collection)
    /// the default collection. A key with several collections must name one.
    pub async fn collection(&self, state: &AppState) -> Result<Uuid, ApiError> {
        if let Some(id) = self.requested_collection_id(state).await? {
            return Ok(id);
        }
        match &self.collections {
            CollectionScope::All => Ok(DEFAULT_COLLECTION_ID),
            CollectionScope::Only(ids) if ids.len() == 1 => Ok(ids[0]),
            CollectionScope::Only(_) => Err(ApiError::bad_request(
                "collection_required",
                "this key may use several collections: name one with ?collection=",
            )),
        }
    }

    /// The collections whose people this request may see (routes that take a person id, and
    /// listing): the one it names, else every collection of the key (`None`: all of them).
    pub async fn visible_collections(
        &self,
        state: &AppState,
    ) -> Result<Option<Vec<Uuid>>, ApiError> {
        Ok(match self.requested_collection_id(state).await? {
            Some(id) => Some(vec![id]),
            None => self.collections.to_stored(),
        })
    }

    /// The collection named by the request, if it names one the key may use. An unknown
    /// collection and one of another key are the same 404: a key cannot learn which
    /// collections exist.
    async fn requested_collection_id(&self, state: &AppState) -> Result<Option<Uuid>, ApiError> {
        let Some(name) = self.requested_collection.check()? else {
            return Ok(None);
        };
        match store::collections::id_of(&state.pool, name.as_str()).await? {
            Some(id) if self.collections.allows(id) => Ok(Some(id)),
            _ => Err(ApiError::NotFound("collection")),
        }
    }

    /// How the audit log names this caller.
    pub fn actor(&self) -> String {
        format!("key:{}", self.key_id)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ip = client_ip(parts);
        state.failed_auth.check(ip)?;
        match authenticate(parts, state).await {
            Err(e @ ApiError::Unauthorized(_)) if parts.headers.contains_key(AUTHORIZATION) => {
                state.failed_auth.record(ip);
                Err(e)
            }
            other => other,
        }
    }
}

/// Optional authentication: `None` without an `Authorization` header (routes that also accept
/// another credential, such as a withdrawal token); a bad key is still an error.
pub struct MaybeCaller(pub Option<Caller>);

impl FromRequestParts<AppState> for MaybeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if parts.headers.contains_key(AUTHORIZATION) {
            Caller::from_request_parts(parts, state)
                .await
                .map(|c| MaybeCaller(Some(c)))
        } else {
            Ok(MaybeCaller(None))
        }
    }
}

async fn authenticate(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
        ApiError::Unauthorized("an API key is required: Authorization: Bearer <key>".into())
    })?;
    let value = header
        .to_str()
        .map_err(|_| ApiError::Unauthorized("malformed Authorization header".into()))?;
    let key = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 200)
        .ok_or_else(|| ApiError::Unauthorized("expected Authorization: Bearer <key>".into()))?;
    let row = store::keys::find_active(&state.pool, &hash_key(key)).await?;
    let row =
        row.ok_or_else(|| ApiError::Unauthorized("unknown, revoked or expired API key".into()))?;
    let scopes = Scopes::parse(&row.scopes)
        .map_err(|e| ApiError::internal(format!("stored key scopes: {e}")))?;
    state
        .rate_limits
        .check(row.id, row.rate_per_minute.map(|r| r.max(1) as u32))?;
    if state.rate_limits.due_for_last_used(row.id) {
        // At most once a minute per key and process: not a write per request.
        let _ = store::keys::touch(&state.pool, row.id).await;
    }
    let requested_collection = RequestedCollection::of(&parts.uri);
    // A malformed `collection` is refused on every route, those that use none included: a
    // request that says something invalid is told so.
    requested_collection.check()?;
    Ok(Caller {
        key_id: row.id,
        scopes,
        collections: CollectionScope::from_stored(row.collections),
        requested_collection,
    })
}
