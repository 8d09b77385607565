//! The login wall of the web UI: pages load the session (or send the
//! browser to the login page), and every request that is not a read must
//! carry the session's CSRF token (sessions themselves are `auth::session`).

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use crate::AppState;
use crate::auth::session::{CSRF_FIELD, CSRF_HEADER, current};
use crate::ui::UiError;

/// Pages behind login: loads the session (or sends the browser to the login
/// page), checks the CSRF token of every request that is not a read, and
/// hands the session to the handler as an extension.
pub(crate) async fn guard(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let session = match current(&app, request.headers()).await {
        Ok(Some(session)) => session,
        Ok(None) => return to_login(&request),
        Err(error) => return UiError::from(error).into_response(),
    };
    let mut request = if safe(request.method()) {
        request
    } else {
        let (parts, body) = request.into_parts();
        let Ok(bytes) = to_bytes(body, app.config.max_body_bytes).await else {
            return UiError::status(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "The form is too large.",
            )
            .into_response();
        };
        let sent = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|it| it.to_str().ok())
            .map(str::to_owned)
            .or_else(|| {
                form_urlencoded::parse(&bytes)
                    .find(|(key, _)| key == CSRF_FIELD)
                    .map(|(_, value)| value.into_owned())
            });
        if !session.csrf_matches(sent.as_deref()) {
            return UiError::csrf().into_response();
        }
        Request::from_parts(parts, Body::from(bytes))
    };
    request.extensions_mut().insert(session);
    next.run(request).await
}

fn safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
}

/// To the login page, coming back here afterwards (for reads).
fn to_login(request: &Request) -> Response {
    if !safe(request.method()) {
        return Redirect::to("/ui/login").into_response();
    }
    let next = request
        .uri()
        .path_and_query()
        .map_or("/ui", |it| it.as_str());
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("next", next)
        .finish();
    let mut response = Redirect::to(&format!("/ui/login?{query}")).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}
