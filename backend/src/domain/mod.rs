//! Parse-don't-validate types: a value of one of these types is valid by construction, so
//! handlers never re-check input.

mod audit;
mod collection;
mod consent;
mod embedding;
mod invalid;
mod operating_point;
mod person;
mod scope;

pub use audit::{AuditAction, AuditOutcome};
pub use collection::{CollectionName, CollectionScope, DEFAULT_COLLECTION, DEFAULT_COLLECTION_ID};
pub use consent::{ConsentEvidence, ConsentStatus, NewConsent, PolicySha256};
pub use embedding::{FaceSource, ParsedEmbeddings};
pub use invalid::Invalid;
pub use operating_point::{OperatingPoint, Thresholds};
pub use person::{BoundedText, PersonName};
pub use scope::{Scope, Scopes};
