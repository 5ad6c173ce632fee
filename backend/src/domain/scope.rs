use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Create people with consent, add and delete their faces, withdraw consent.
    Enroll,
    /// Recognize, verify and detect.
    Recognize,
    /// Everything, including listing, export and erasure.
    Admin,
}

impl Scope {
    /// The scope's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Enroll => "enroll",
            Scope::Recognize => "recognize",
            Scope::Admin => "admin",
        }
    }

    /// Parses a scope name.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "enroll" => Some(Scope::Enroll),
            "recognize" => Some(Scope::Recognize),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }
}

/// A non-empty set of scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    /// Parses names; unknown names are an error.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self, String> {
        let mut v = Vec::new();
        for n in names {
            let s = Scope::parse(n.as_ref()).ok_or_else(|| {
                format!("unknown scope {:?} (enroll, recognize, admin)", n.as_ref())
            })?;
            if !v.contains(&s) {
                v.push(s);
            }
        }
        if v.is_empty() {
            return Err("at least one scope is needed".into());
        }
        Ok(Self(v))
    }

    /// Every scope.
    pub fn all() -> Self {
        Self(vec![Scope::Enroll, Scope::Recognize, Scope::Admin])
    }

    /// Whether `s` is granted (admin grants everything).
    pub fn allows(&self, s: Scope) -> bool {
        self.0.contains(&s) || self.0.contains(&Scope::Admin)
    }

    /// The names, for storage.
    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|s| s.as_str().to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_allows_all_and_unknown_is_rejected() {
        let s = Scopes::parse(&["admin"]).expect("parses");
        assert!(s.allows(Scope::Enroll) && s.allows(Scope::Recognize));
        let r = Scopes::parse(&["recognize"]).expect("parses");
        assert!(!r.allows(Scope::Enroll));
        assert!(Scopes::parse(&["root"]).is_err());
        assert!(Scopes::parse::<&str>(&[]).is_err());
    }
}
