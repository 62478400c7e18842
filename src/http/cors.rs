//! Cross-origin requests (the Fetch standard's CORS), so a web mail client served from another
//! origin can use the API, uploads, downloads, tickets and EventSource.
//!
//! Every origin is allowed: Herald's credentials travel in the `Authorization` header or, for
//! streams, in a ticket in the URL, never in cookies, so a page of another origin can only use
//! credentials its user typed into it; a browser never adds Herald's on its own. A preflight
//! (`OPTIONS` with `Access-Control-Request-Method`) is answered here, whatever the path.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{Error, HttpResponse};
use futures_util::future::LocalBoxFuture;

/// What a preflight may ask to send.
const ALLOWED_HEADERS: &str = "Authorization, Content-Type, Accept, Last-Event-ID";
/// Response headers a page may read besides the simple ones.
const EXPOSED_HEADERS: &str = "Location, Retry-After, Content-Disposition";
/// How long a browser may reuse a preflight's answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "600";

/// Middleware (`App::wrap_fn`): answers preflights, and lets other origins read responses.
pub fn handle<S, B>(
    req: ServiceRequest,
    srv: &S,
) -> LocalBoxFuture<'static, Result<ServiceResponse<EitherBody<B>>, Error>>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    let cross_origin = req.headers().contains_key(header::ORIGIN);
    if req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        let preflight = HttpResponse::build(StatusCode::NO_CONTENT)
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"))
            .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOWED_HEADERS))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE))
            .finish();
        return Box::pin(async move { Ok(req.into_response(preflight).map_into_right_body()) });
    }
    let response = srv.call(req);
    Box::pin(async move {
        let mut response = response.await?;
        if cross_origin {
            let headers = response.headers_mut();
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSED_HEADERS),
            );
        }
        Ok(response.map_into_left_body())
    })
}
