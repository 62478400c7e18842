//! HTTP authentication: Basic and Bearer on every JMAP endpoint (RFC 8620 §1.7).

use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{HttpRequest, HttpResponse};
use base64::Engine;

use super::AppState;
use super::problem;
use crate::dispatcher::Authenticate;
use crate::jmap::session::Principal;
use crate::store::credentials::Credentials;

/// Reads the `Authorization` header. `None` when absent or malformed.
pub fn credentials(req: &HttpRequest) -> Option<Credentials> {
    let header = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, value) = header.trim().split_once(' ')?;
    let value = value.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value)
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, password) = decoded.split_once(':')?;
        Some(Credentials::Basic {
            user: user.to_owned(),
            password: password.to_owned(),
        })
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(Credentials::Bearer(value.to_owned()))
    } else {
        None
    }
}

/// 401 with both challenges.
pub fn unauthorized(detail: &str) -> HttpResponse {
    let mut response = problem::status(StatusCode::UNAUTHORIZED, detail);
    let headers = response.headers_mut();
    headers.append(
        actix_web::http::header::WWW_AUTHENTICATE,
        actix_web::http::header::HeaderValue::from_static(
            "Basic realm=\"herald\", charset=\"UTF-8\"",
        ),
    );
    headers.append(
        actix_web::http::header::WWW_AUTHENTICATE,
        actix_web::http::header::HeaderValue::from_static("Bearer realm=\"herald\""),
    );
    response
}

/// 429 for an address past `auth.max_failed_logins_per_minute` (`http::failed_logins`).
fn too_many_failures(wait: std::time::Duration) -> HttpResponse {
    let mut response = problem::status(
        StatusCode::TOO_MANY_REQUESTS,
        "too many failed logins from this address; try again later",
    );
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&(wait.as_secs() + 1).to_string())
    {
        response
            .headers_mut()
            .insert(actix_web::http::header::RETRY_AFTER, v);
    }
    response
}

/// Authenticates the request, or returns the response to send instead (401, 429 after too many
/// failures from its address, or 503 when the store cannot be reached).
pub async fn authenticate(state: &AppState, req: &HttpRequest) -> Result<Principal, HttpResponse> {
    let Some(credentials) = credentials(req) else {
        return Err(unauthorized(
            "authentication required: use HTTP Basic or a Bearer token",
        ));
    };
    let address = req.peer_addr().map(|a| a.ip());
    if let Some(wait) = address.and_then(|a| state.failed_logins.wait(a, Instant::now())) {
        return Err(too_many_failures(wait));
    }
    match state.dispatcher.send(Authenticate(credentials)).await {
        Ok(Ok(Some(principal))) => Ok(principal),
        Ok(Ok(None)) => {
            if let Some(a) = address {
                state.failed_logins.failed(a, Instant::now());
            }
            Err(unauthorized("wrong user name, password or token"))
        }
        Ok(Err(e)) => Err(problem::internal("authentication", e)),
        Err(e) => Err(problem::internal("authentication", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn basic_and_bearer_headers_are_read_and_garbage_is_not() {
        let req = TestRequest::default()
            .insert_header((AUTHORIZATION, "Basic YWxpY2U6czNjcjN0OjQy"))
            .to_http_request();
        assert_eq!(
            credentials(&req),
            Some(Credentials::Basic {
                user: "alice".into(),
                password: "s3cr3t:42".into()
            })
        );
        let req = TestRequest::default()
            .insert_header((AUTHORIZATION, "bearer hrd_x_y"))
            .to_http_request();
        assert_eq!(
            credentials(&req),
            Some(Credentials::Bearer("hrd_x_y".into()))
        );
        for bad in ["Basic !!!", "Basic", "Digest abc", "Basic YWxpY2U="] {
            let req = TestRequest::default()
                .insert_header((AUTHORIZATION, bad))
                .to_http_request();
            assert_eq!(credentials(&req), None, "{bad}");
        }
    }
}
