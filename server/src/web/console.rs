//! The web console: a page, its script, the worker that reads the live tail and a style
//! sheet (`console/`), built into the binary
//! with `include_str!`, so that it works where the relay has no internet and needs no Node
//! to build. The page reads the JSON and Server-Sent Events endpoints of this module's
//! parent, from the same origin: no CORS, and the same tokens (the user pastes one; it is
//! kept in the tab's `sessionStorage` only).

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::Full;
use tonic::body::Body;

/// Where the console lives.
pub const PATH: &str = "/console/";

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");
const WORKER: &str = include_str!("console/tail-worker.js");

/// The page may load only its own files and talk only to its own origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Whether `path` is the console's.
pub fn handles(path: &str) -> bool {
    path == "/console" || path.starts_with(PATH)
}

/// The console's answer to `method` on `path`; `None` for what it does not serve.
pub fn serve(method: &Method, path: &str) -> Option<http::Response<Body>> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let (body, content_type) = match path {
        "/console" => {
            let mut response = http::Response::new(Body::empty());
            *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
            response
                .headers_mut()
                .insert(header::LOCATION, HeaderValue::from_static(PATH));
            return Some(response);
        }
        "/console/" | "/console/index.html" => (INDEX, "text/html; charset=utf-8"),
        "/console/console.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "/console/console.css" => (STYLE, "text/css; charset=utf-8"),
        "/console/tail-worker.js" => (WORKER, "text/javascript; charset=utf-8"),
        _ => return None,
    };
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::new(Full::new(Bytes::from_static(body.as_bytes())))
    };
    let mut response = http::Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The files change with the binary: always ask again (they are small).
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_its_files_and_redirects_to_its_root() {
        for (path, kind, marker) in [
            (
                "/console/",
                "text/html",
                "<title>kinesis-relay console</title>",
            ),
            ("/console/console.js", "text/javascript", "Last-Event-ID"),
            ("/console/console.css", "text/css", ".records"),
            (
                "/console/tail-worker.js",
                "text/javascript",
                "TextDecoderStream",
            ),
        ] {
            let response = serve(&Method::GET, path).expect(path);
            assert_eq!(response.status(), StatusCode::OK);
            let content_type = response.headers()[header::CONTENT_TYPE].to_str().unwrap();
            assert!(content_type.starts_with(kind), "{path}: {content_type}");
            assert!(
                [INDEX, SCRIPT, STYLE, WORKER]
                    .iter()
                    .any(|file| file.contains(marker))
            );
        }
        let redirect = serve(&Method::GET, "/console").unwrap();
        assert_eq!(redirect.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(redirect.headers()[header::LOCATION], PATH);
        assert!(serve(&Method::GET, "/console/secret").is_none());
        assert!(serve(&Method::POST, "/console/").is_none());
        assert!(handles("/console/x") && handles("/console") && !handles("/consoles"));
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for file in [INDEX, SCRIPT, STYLE, WORKER] {
            assert!(!file.contains("http://") && !file.contains("https://"));
        }
    }
}
