//! The service's JSON API, one set of types for the server (which derives the OpenAPI document
//! from them, with the `openapi` feature), the command line and the browser client: a renamed
//! field breaks the build on both sides instead of the browser at run time.
//!
//! Requests are checked again by the service (its `domain` types parse them); these types only
//! carry them.

mod face;
mod faces;
mod people;
mod problem;
mod recognize;

pub use face::{FaceReport, QualityIssueReport};
pub use faces::{AddFacesRequest, AddedFaces, EmbeddingInput, FaceSource};
pub use people::{
    ConsentRequest, ConsentStatus, ConsentView, CreatePersonRequest, CreatedPerson, Erasure,
    EvidenceRequest, PeoplePage, PersonSummary, PersonView,
};
pub use problem::Problem;
pub use recognize::{
    Candidate, Decision, Outcome, ProbeResult, RecognizeRequest, RecognizeResponse, VerifyRequest,
    VerifyResponse,
};
/// Ids on the wire (the same type on both sides).
pub use uuid::Uuid;
