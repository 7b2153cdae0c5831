//! Extractors whose rejections are problem answers that name the bad field.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::app::{AppError, FieldError};
use crate::objects_only::{NUL_MESSAGE, ObjectsOnly};

/// JSON body. The content type is not checked (curl's `-d` sends form encoding by default);
/// the body must parse as JSON.
pub struct ApiJson<T>(pub T);

/// Turns a serde error at `path` into a field error; "missing field `x`" points at `x`.
fn field_error(path: &str, message: String) -> FieldError {
    let path = if path == "." { "" } else { path };
    if let Some(name) = message
        .strip_prefix("missing field `")
        .and_then(|m| m.split('`').next())
    {
        let full = if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        };
        return FieldError::new(full, "is required");
    }
    // serde_json appends " at line L column C"; the path says where already.
    let message = match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message,
    };
    FieldError::new(if path.is_empty() { "$" } else { path }, message)
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(AppError::BadRequest(
            "the body is empty; a JSON object is expected".into(),
        ));
    }
    // Every body here is an object (deeper down, `ObjectsOnly` refuses arrays read as structs).
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(AppError::Validation(vec![FieldError::new(
            "$",
            "must be a JSON object, not an array",
        )]));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(ObjectsOnly(&mut de)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                AppError::Validation(vec![field_error(&path, inner.to_string())])
            }
            _ => AppError::BadRequest(format!(
                "not valid JSON at line {} column {}: {inner}",
                inner.line(),
                inner.column()
            )),
        }
    })?;
    de.end()
        .map_err(|e| AppError::BadRequest(format!("unexpected data after the JSON value: {e}")))?;
    Ok(value)
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        Ok(ApiJson(parse_json(&bytes)?))
    }
}

fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError(AppError::PayloadTooLarge(
            "the request body is larger than server.max_body_bytes allows".into(),
        ))
    } else {
        ApiError(AppError::BadRequest(e.body_text()))
    }
}

/// Query string into `T`, with a 400 that says which parameter is wrong.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // Every parameter is a name, an id, a time or a number: none holds a NUL character.
        if let Ok(pairs) = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            && let Some((name, _)) = pairs
                .0
                .iter()
                .find(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            return Err(ApiError(AppError::Validation(vec![FieldError::new(
                name.replace('\0', "\\u0000"),
                NUL_MESSAGE,
            )])));
        }
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e: QueryRejection| {
                let text = e.body_text();
                let detail = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text);
                ApiError(AppError::Validation(vec![FieldError::new(
                    "query",
                    detail.to_string(),
                )]))
            })
    }
}

/// Path parameters.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if parts.uri.path().to_ascii_lowercase().contains("%00") {
            return Err(ApiError(AppError::BadRequest(format!(
                "the path {NUL_MESSAGE} (%00)"
            ))));
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e: PathRejection| ApiError(AppError::BadRequest(e.body_text())))
    }
}
