//! The stylesheet and the script, compiled into the binary. Pages link them
//! with `?v=<hash of the contents>`, so they can be cached for good.

use std::sync::LazyLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest as _, Sha256};

use crate::http::extract::Path;
use crate::ui::UiError;

const CSS: &str = include_str!("../../assets/app.css");
const JS: &str = include_str!("../../assets/app.js");

static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut hasher = Sha256::new();
    hasher.update(CSS);
    hasher.update(JS);
    hex::encode(&hasher.finalize()[..6])
});

/// The assets' version, for cache busting.
pub(crate) fn version() -> &'static str {
    &VERSION
}

/// `GET /ui/assets/{name}`.
pub(crate) async fn serve(Path(name): Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "app.css" => (CSS, "text/css; charset=utf-8"),
        "app.js" => (JS, "text/javascript; charset=utf-8"),
        _ => {
            return UiError::status(axum::http::StatusCode::NOT_FOUND, "There is no such file.")
                .into_response();
        }
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response
}
