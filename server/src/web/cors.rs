//! CORS for browser pages served from other origins: gRPC-Web calls and the HTTP endpoints
//! answer pages of the origins `--cors-allowed-origin` lists (none by default, so a page
//! elsewhere cannot read from the relay through a visitor's browser), preflights included.
//!
//! No `Access-Control-Allow-Credentials`: the relay's tokens travel in the `authorization`
//! header that a page sets itself, never in cookies, so browsers need not send credentials.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::Full;
use tonic::body::Body;

/// Request headers a page may send (preflight `Access-Control-Allow-Headers`).
const ALLOWED_HEADERS: &str = "content-type, x-grpc-web, x-user-agent, grpc-timeout, grpc-accept-encoding, authorization, last-event-id";
/// Response headers a page may read: the status and the relay's trailers, which a
/// trailers-only gRPC-Web response carries as headers.
const EXPOSED_HEADERS: &str =
    "grpc-status, grpc-message, grpc-status-details-bin, kinesis-relay-cursor, grpc-encoding";
/// How long a browser may reuse a preflight's answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "600";

/// The origins allowed.
#[derive(Debug, Clone, Default)]
pub struct Cors {
    /// Origins as `scheme://host[:port]`, lower case.
    origins: Vec<String>,
    /// `*` was listed: every origin.
    any: bool,
}

/// Checks an origin as the flag takes it: `*`, or `scheme://host[:port]` with no path.
pub fn parse_origin(text: &str) -> Result<String, String> {
    if text == "*" {
        return Ok(text.to_owned());
    }
    let well_formed = text.split_once("://").is_some_and(|(scheme, rest)| {
        matches!(scheme, "http" | "https")
            && !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
    });
    if !well_formed {
        return Err(format!(
            "{text:?} is not an origin: give scheme://host[:port] as a browser sends it (e.g. https://console.example.com or http://localhost:8080, no path or trailing slash), or * for every origin"
        ));
    }
    Ok(text.to_ascii_lowercase())
}

impl Cors {
    /// Allows `origins` (each checked by [`parse_origin`]).
    pub fn new(origins: &[String]) -> Self {
        Self {
            any: origins.iter().any(|origin| origin == "*"),
            origins: origins
                .iter()
                .filter(|origin| *origin != "*")
                .map(|origin| origin.to_ascii_lowercase())
                .collect(),
        }
    }

    /// Whether any origin is allowed.
    pub fn is_on(&self) -> bool {
        self.any || !self.origins.is_empty()
    }

    /// The `Access-Control-Allow-Origin` value for a request with these headers: `None`
    /// when it has no `Origin` or one that is not allowed.
    fn allow_origin(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        let origin = headers.get(header::ORIGIN)?;
        if self.any {
            return Some(HeaderValue::from_static("*"));
        }
        let text = origin.to_str().ok()?;
        self.origins
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(text))
            .then(|| origin.clone())
    }

    /// Whether `request` is a CORS preflight (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`).
    pub fn is_preflight<B>(request: &http::Request<B>) -> bool {
        request.method() == Method::OPTIONS
            && request.headers().contains_key(header::ORIGIN)
            && request
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// The answer to a preflight with these headers: 204 and the permissions for an
    /// allowed origin, 403 without them for any other.
    pub fn preflight(&self, headers: &HeaderMap) -> http::Response<Body> {
        let Some(allow_origin) = self.allow_origin(headers) else {
            let text = if self.is_on() {
                "this origin is not allowed: add it to the relay's --cors-allowed-origin\n"
            } else {
                "cross-origin requests are off: start the relay with --cors-allowed-origin ORIGIN\n"
            };
            let mut response =
                http::Response::new(Body::new(Full::new(Bytes::from_static(text.as_bytes()))));
            *response.status_mut() = StatusCode::FORBIDDEN;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            self.vary(response.headers_mut());
            return response;
        };
        let mut response = http::Response::new(Body::empty());
        *response.status_mut() = StatusCode::NO_CONTENT;
        let out = response.headers_mut();
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
        out.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST, GET"),
        );
        out.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOWED_HEADERS),
        );
        out.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(PREFLIGHT_MAX_AGE),
        );
        self.vary(out);
        response
    }

    /// The CORS headers of the response to a request with `request_headers`: the
    /// permission and the exposed headers when its origin is allowed.
    pub fn response_headers(&self, request_headers: &HeaderMap) -> HeaderMap {
        let mut out = HeaderMap::new();
        if !self.is_on() {
            return out;
        }
        self.vary(&mut out);
        if let Some(allow_origin) = self.allow_origin(request_headers) {
            out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
            out.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSED_HEADERS),
            );
        }
        out
    }

    /// Tells caches that the answer depends on the origin (unless every origin gets the
    /// same one).
    fn vary(&self, headers: &mut HeaderMap) {
        if !self.any {
            headers.append(header::VARY, HeaderValue::from_static("origin"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(origin: Option<&str>, method: Method) -> http::Request<()> {
        let mut request = http::Request::builder().method(method).uri("/x");
        if let Some(origin) = origin {
            request = request
                .header(header::ORIGIN, origin)
                .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST");
        }
        request.body(()).unwrap()
    }

    #[test]
    fn origins_are_checked_as_the_flag_takes_them() {
        assert_eq!(parse_origin("*").unwrap(), "*");
        assert_eq!(
            parse_origin("https://Console.example.com:8443").unwrap(),
            "https://console.example.com:8443"
        );
        for bad in ["example.com", "https://example.com/", "ftp://x", "https://"] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_allowed_origins_get_permissions() {
        let cors = Cors::new(&["https://console.example.com".into()]);
        let allowed = request(Some("https://console.example.com"), Method::OPTIONS);
        assert!(Cors::is_preflight(&allowed));
        let answer = cors.preflight(allowed.headers());
        assert_eq!(answer.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            answer.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://console.example.com"
        );
        let allowed_headers = answer.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS]
            .to_str()
            .unwrap();
        for name in ["x-grpc-web", "authorization", "grpc-timeout"] {
            assert!(allowed_headers.contains(name), "{name}");
        }

        let other = request(Some("https://evil.example"), Method::OPTIONS);
        let answer = cors.preflight(other.headers());
        assert_eq!(answer.status(), StatusCode::FORBIDDEN);
        assert!(
            !answer
                .headers()
                .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        );

        let headers = cors.response_headers(other.headers());
        assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
        assert_eq!(headers[header::VARY], "origin");
        let headers = cors.response_headers(allowed.headers());
        assert!(
            headers[header::ACCESS_CONTROL_EXPOSE_HEADERS]
                .to_str()
                .unwrap()
                .contains("kinesis-relay-cursor")
        );
        assert!(!Cors::is_preflight(&request(None, Method::OPTIONS)));
    }

    #[test]
    fn off_by_default_and_star_allows_every_origin() {
        let off = Cors::default();
        let page = request(Some("http://localhost:8080"), Method::OPTIONS);
        assert_eq!(
            off.preflight(page.headers()).status(),
            StatusCode::FORBIDDEN
        );
        assert!(off.response_headers(page.headers()).is_empty());

        let any = Cors::new(&["*".into()]);
        assert_eq!(
            any.preflight(page.headers()).headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "*"
        );
    }
}
