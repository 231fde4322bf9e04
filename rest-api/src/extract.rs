//! A JSON body extractor whose rejections are Connect-style errors with a useful message.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::ApiError;

/// Like `axum::Json`, but a malformed, mistyped or oversized body answers with [`ApiError`].
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(reject(rejection)),
        }
    }
}

fn reject(rejection: JsonRejection) -> ApiError {
    // Kafka Connect answers mistyped bodies with 400, not 422.
    let status = match &rejection {
        JsonRejection::JsonDataError(_) => StatusCode::BAD_REQUEST,
        _ => rejection.status(),
    };
    let message = match &rejection {
        JsonRejection::MissingJsonContentType(_) => {
            "Request body must be JSON with Content-Type: application/json".to_owned()
        }
        JsonRejection::JsonSyntaxError(_) => format!("Malformed JSON: {}", rejection.body_text()),
        JsonRejection::JsonDataError(_) => {
            format!("Invalid request body: {}", rejection.body_text())
        }
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => "Request body is too large".to_owned(),
        _ => rejection.body_text(),
    };
    ApiError::new(status, message)
}
