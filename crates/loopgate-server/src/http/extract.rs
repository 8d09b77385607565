//! Extractors that refuse bad input with a problem response: JSON bodies
//! (size and depth are checked before parsing), query strings and ids.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use futures::StreamExt;
use loopgate_proto::ErrorCode;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::http::error::ApiError;

/// JSON deeper than this is refused before parsing.
pub const MAX_DEPTH: usize = 64;

/// A JSON request body.
pub struct JsonBody<T>(pub T);

/// A JSON request body with its text, for the rare check that needs the
/// digits as written (see `loopgate_core::routing::value::check_exact`).
pub struct JsonBodyText<T>(pub T, pub Bytes);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &AppState) -> Result<JsonBody<T>, ApiError> {
        let (value, _) = read_json(req, app).await?;
        Ok(JsonBody(value))
    }
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBodyText<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &AppState) -> Result<JsonBodyText<T>, ApiError> {
        let (value, bytes) = read_json(req, app).await?;
        Ok(JsonBodyText(value, bytes))
    }
}

/// A JSON request body that may be left out: no body is `T::default()`.
pub struct JsonBodyOr<T>(pub T);

impl<T: DeserializeOwned + Default> FromRequest<AppState> for JsonBodyOr<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &AppState) -> Result<JsonBodyOr<T>, ApiError> {
        // No body, or JSON `null` (the document calls the body optional
        // and nullable): the defaults.
        let (value, _) = read_optional_json::<Option<T>>(req, app).await?;
        Ok(JsonBodyOr(value.flatten().unwrap_or_default()))
    }
}

/// A refused body is drained up to four times the limit, and at least this.
const DRAIN_MIN: usize = 4 * 1024 * 1024;

/// Reads and drops up to `at_most` bytes of a body.
async fn drain(mut stream: axum::body::BodyDataStream, at_most: usize) {
    let mut seen = 0_usize;
    while let Some(Ok(chunk)) = stream.next().await {
        seen += chunk.len();
        if at_most < seen {
            break;
        }
    }
}

/// Reads a body within the size limit, refuses deep JSON before parsing,
/// and parses it.
async fn read_json<T: DeserializeOwned>(
    req: Request,
    app: &AppState,
) -> Result<(T, Bytes), ApiError> {
    match read_optional_json(req, app).await? {
        (Some(value), bytes) => Ok((value, bytes)),
        (None, _) => Err(ApiError::invalid(
            "request body is empty; a JSON object is expected",
        )),
    }
}

/// [`read_json`], with `None` for an empty body.
async fn read_optional_json<T: DeserializeOwned>(
    req: Request,
    app: &AppState,
) -> Result<(Option<T>, Bytes), ApiError> {
    let limit = app.config.max_body_bytes;
    let too_large = || {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("request body is larger than {limit} bytes"),
        )
        .help("send a smaller body; large payloads belong in your own storage, referenced by id")
    };
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|it| it.to_str().ok())
        .and_then(|it| it.parse::<usize>().ok());
    // A refused body is still read (and dropped) up to a bound, so that a
    // client still sending it reads the 413 instead of a reset connection.
    let drain_at_most = limit.saturating_mul(4).max(DRAIN_MIN);
    if let Some(declared) = declared.filter(|n| limit < *n) {
        if declared <= drain_at_most {
            drain(req.into_body().into_data_stream(), drain_at_most).await;
        }
        return Err(too_large());
    }
    let mut stream = req.into_body().into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return Err(ApiError::invalid("the request body could not be read"));
        };
        if limit < bytes.len() + chunk.len() {
            drain(stream, drain_at_most.saturating_sub(bytes.len())).await;
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    let bytes = Bytes::from(bytes);
    if bytes.is_empty() {
        return Ok((None, bytes));
    }
    // Every body is a JSON object: serde would read an array into a
    // struct's fields by position, which the API document does not allow.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::invalid(
            "the body must be a JSON object, not an array",
        ));
    }
    let shape = json_shape(&bytes);
    if MAX_DEPTH < shape.depth {
        return Err(ApiError::invalid(format!(
            "JSON is nested deeper than {MAX_DEPTH} levels"
        )));
    }
    if shape.nul {
        return Err(ApiError::invalid(NUL_REFUSED));
    }
    match serde_json::from_slice(&bytes) {
        Ok(value) => Ok((Some(value), bytes)),
        Err(error) => Err(
            ApiError::invalid(format!("request body is not valid: {error}"))
                .help("check the body against the API reference at /openapi.json"),
        ),
    }
}

/// Path parameters, as axum's `Path`, but a segment that does not read
/// (not UTF-8, not the type) is a problem response like every other bad
/// input, not axum's plain text.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Path<T>, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => {
                let why: String = rejection.body_text().chars().take(200).collect();
                Err(ApiError::invalid(format!("the path is not valid: {why}")))
            }
        }
    }
}

/// Query parameters.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Params<T>, ApiError> {
        // An empty value (`?action=`) is never a filter the document
        // describes: say so rather than read it as "any" or as absent.
        if let Some(query) = parts.uri.query()
            && let Some((name, _)) =
                form_urlencoded::parse(query.as_bytes()).find(|(_, value)| value.is_empty())
        {
            return Err(ApiError::invalid(format!(
                "`{name}` is empty: give it a value or leave it out"
            )));
        }
        match Query::<T>::from_request_parts(parts, app).await {
            Ok(Query(value)) => Ok(Params(value)),
            Err(rejection) => Err(ApiError::invalid(format!(
                "query string is not valid: {}",
                rejection.body_text()
            ))),
        }
    }
}

/// Why text holding U+0000 is refused: PostgreSQL's text cannot hold it,
/// and a store must not answer the same request differently (a 500 on one,
/// a 201 on the other) or fail a write, a deadline or a rebuild later on a
/// value it accepted.
pub const NUL_REFUSED: &str = "text must not contain U+0000 (NUL)";

/// Whether URL-encoded text (a request's path and query, a form body)
/// holds U+0000: written `%00`, or as the raw byte in a form. `%2500` is
/// the text `%00`, and does not match. One scan, nothing decoded.
pub fn encoded_holds_nul(text: &[u8]) -> bool {
    text.contains(&0) || text.windows(3).any(|it| it == b"%00")
}

/// What [`json_shape`] sees of JSON text before it is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonShape {
    /// Nesting depth, counting brackets outside strings.
    pub depth: usize,
    /// A string (or member name) holds U+0000, written `\u0000`.
    pub nul: bool,
}

/// The nesting depth of JSON text and whether a string holds U+0000, in
/// one pass. Malformed text is left to the parser.
pub fn json_shape(bytes: &[u8]) -> JsonShape {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0_usize, 0_usize, false, false);
    let mut nul = false;
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, b'u') => {
                    escaped = false;
                    nul |= bytes.get(i + 1..i + 5) == Some(b"0000");
                }
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => (),
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => (),
        }
    }
    JsonShape {
        depth: deepest,
        nul,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth() {
        let depth = |bytes: &[u8]| json_shape(bytes).depth;
        assert_eq!(depth(br#"{"a": [1, {"b": "[[[{{"}]}"#), 3);
        assert_eq!(depth(br#""\"[""#), 0);
        assert_eq!(depth(&b"[".repeat(100)), 100);
    }

    #[test]
    fn nul_in_encoded_text() {
        assert!(encoded_holds_nul(b"/v1/groups/ops%00"));
        assert!(encoded_holds_nul(b"a=1&body=x%00y"));
        assert!(encoded_holds_nul(b"body=x\0y"));
        assert!(!encoded_holds_nul(b"/v1/proposals?action=a%2500"));
        assert!(!encoded_holds_nul(b"body=100%25&n=%0A"));
    }

    #[test]
    fn nul_in_a_string_or_name() {
        let nul = |bytes: &[u8]| json_shape(bytes).nul;
        assert!(nul(br#"{"a": "x\u0000y"}"#));
        assert!(nul(br#"{"a\u0000": 1}"#));
        assert!(nul(br#"{"a": ["\"\u0000"]}"#));
        // A backslash written `\\` followed by the text `u0000` is no NUL.
        assert!(!nul(br#"{"a": "\\u0000"}"#));
        assert!(nul(br#"{"a": "\u00001"}"#));
        assert!(!nul(br#"{"a": "\u0001", "b": 0000}"#));
        assert!(!nul(br#"{"a": "\u000"#));
    }
}
