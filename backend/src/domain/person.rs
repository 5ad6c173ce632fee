use crate::domain::Invalid;

/// A trimmed, non-empty text of at most `N` characters without control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundedText<const N: usize>(String);

impl<const N: usize> BoundedText<N> {
    /// Parses `s`; `field` names it in the error.
    pub fn parse(s: &str, field: &'static str) -> Result<Self, Invalid> {
        let t = s.trim();
        if t.is_empty() {
            return Err(Invalid::new(
                "field_empty",
                format!("{field} must not be empty"),
            ));
        }
        if t.chars().count() > N {
            return Err(Invalid::new(
                "field_too_long",
                format!("{field} is longer than {N} characters"),
            ));
        }
        if t.chars().any(char::is_control) {
            return Err(Invalid::new(
                "field_invalid",
                format!("{field} contains control characters"),
            ));
        }
        Ok(Self(t.to_string()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A person's display name: 1 to 200 characters.
pub type PersonName = BoundedText<200>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            PersonName::parse("  Ada ", "name")
                .map(|n| n.as_str().to_string())
                .ok(),
            Some("Ada".into())
        );
        assert!(PersonName::parse("   ", "name").is_err());
        assert!(PersonName::parse(&"x".repeat(201), "name").is_err());
        assert!(PersonName::parse("a\u{0}b", "name").is_err());
    }
}
