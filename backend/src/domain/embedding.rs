use visage_shared::Embedding;

use crate::domain::Invalid;

pub use visage_shared::api::FaceSource;

/// One to `max` validated embeddings (known model, right length, finite, non-zero; unit length).
#[derive(Debug, Clone)]
pub struct ParsedEmbeddings(Vec<Embedding>);

impl ParsedEmbeddings {
    /// Validates raw embeddings; the error names the index of the first bad one.
    pub fn parse(raw: Vec<(String, Vec<f32>)>, max: usize) -> Result<Self, Invalid> {
        if raw.is_empty() {
            return Err(Invalid::new(
                "embeddings_empty",
                "at least one embedding is needed",
            ));
        }
        if raw.len() > max {
            return Err(Invalid::new(
                "embeddings_too_many",
                format!("at most {max} embeddings per request, got {}", raw.len()),
            ));
        }
        let mut out = Vec::with_capacity(raw.len());
        for (i, (model, vector)) in raw.into_iter().enumerate() {
            let e = Embedding::new(&model, vector).map_err(|e| Invalid {
                code: e.code(),
                detail: format!("embedding {i}: {e}"),
                extra: Some(serde_json::json!({ "index": i })),
            })?;
            out.push(e);
        }
        Ok(Self(out))
    }

    /// The embeddings.
    pub fn into_inner(self) -> Vec<Embedding> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use visage_shared::model::{EMBEDDER_ID, EMBEDDING_DIM};

    #[test]
    fn rejects_bad_vectors() {
        let ok = vec![(EMBEDDER_ID.to_string(), vec![1.0; EMBEDDING_DIM])];
        assert!(ParsedEmbeddings::parse(ok, 4).is_ok());
        type Vectors = Vec<(String, Vec<f32>)>;
        let cases: Vec<(Vectors, &str)> = vec![
            (vec![], "embeddings_empty"),
            (
                vec![(EMBEDDER_ID.into(), vec![1.0; 3])],
                "embedding_wrong_length",
            ),
            (
                vec![(EMBEDDER_ID.into(), vec![0.0; EMBEDDING_DIM])],
                "embedding_zero",
            ),
            (
                vec![(EMBEDDER_ID.into(), {
                    let mut v = vec![1.0; EMBEDDING_DIM];
                    v[5] = f32::INFINITY;
                    v
                })],
                "embedding_not_finite",
            ),
            (
                vec![("other".into(), vec![1.0; EMBEDDING_DIM])],
                "embedding_unknown_model",
            ),
        ];
        for (raw, code) in cases {
            match ParsedEmbeddings::parse(raw, 4) {
                Err(e) => assert_eq!(e.code(), code),
                Ok(_) => panic!("{code} accepted"),
            }
        }
    }
}
