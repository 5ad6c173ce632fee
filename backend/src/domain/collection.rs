//! Collections: independent galleries (a site, a tenant, an application) in one service.

use uuid::Uuid;

use super::Invalid;

/// The collection that held everything before collections existed, and the one a request
/// without `collection` uses when its key may use every collection (migration
/// `20261201100001_collections.sql`).
pub const DEFAULT_COLLECTION_ID: Uuid = Uuid::from_u128(1);

/// Its name.
pub const DEFAULT_COLLECTION: &str = "default";

/// A collection's name: 1 to 63 characters of `a-z`, `0-9`, `_` and `-`, starting with a
/// letter or digit (as the database's check says), so it is safe in URLs and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionName(String);

impl CollectionName {
    /// Parses `s`.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let ok = (1..=63).contains(&s.len())
            && s.bytes().enumerate().all(|(i, b)| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && (b == b'_' || b == b'-'))
            });
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(Invalid::new(
                "invalid_collection_name",
                "a collection name is 1 to 63 characters of a-z, 0-9, _ and -, starting with a letter or digit",
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which collections a key may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CollectionScope {
    /// Every collection (admin keys created without a list, and the bootstrap key).
    All,
    /// These, at least one.
    Only(Vec<Uuid>),
}

impl CollectionScope {
    /// From the stored column (NULL: every collection).
    pub fn from_stored(ids: Option<Vec<Uuid>>) -> Self {
        match ids {
            None => CollectionScope::All,
            Some(ids) => CollectionScope::Only(ids),
        }
    }

    /// The stored column.
    pub fn to_stored(&self) -> Option<Vec<Uuid>> {
        match self {
            CollectionScope::All => None,
            CollectionScope::Only(ids) => Some(ids.clone()),
        }
    }

    /// Whether collection `id` is in the scope.
    pub fn allows(&self, id: Uuid) -> bool {
        match self {
            CollectionScope::All => true,
            CollectionScope::Only(ids) => ids.contains(&id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_url_safe_and_bounded() {
        for ok in ["default", "site-2", "a", "tenant_7", &"x".repeat(63)] {
            assert!(CollectionName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "_a",
            "A",
            "a b",
            "a/b",
            "é",
            &"x".repeat(64),
            "a\u{0}",
        ] {
            assert!(CollectionName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_scope_allows_its_collections_only() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(CollectionScope::All.allows(a));
        assert!(CollectionScope::Only(vec![a]).allows(a));
        assert!(!CollectionScope::Only(vec![a]).allows(b));
        assert_eq!(CollectionScope::from_stored(None), CollectionScope::All);
    }
}
