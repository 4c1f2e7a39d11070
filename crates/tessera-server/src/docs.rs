//! `/docs`: Swagger UI served from vendored assets (works offline).
//!
//! The page and its assets are embedded in the binary (`assets/swagger-ui/`, copied from the npm
//! package `swagger-ui-dist`); nothing is fetched from another origin. The UI reads
//! `/openapi.json`.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Version of the vendored `swagger-ui-dist`, also used to bust caches of its assets.
macro_rules! swagger_ui_version {
    () => {
        "5.35.0"
    };
}

/// The version of the vendored Swagger UI.
pub const SWAGGER_UI_VERSION: &str = swagger_ui_version!();

const INDEX_HTML: &str = concat!(
    r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tessera API</title>
<link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png">
<link rel="stylesheet" href="/docs/assets/swagger-ui.css?v="#,
    swagger_ui_version!(),
    r#"">
<style>body { margin: 0; }</style>
</head>
<body>
<div id="swagger-ui"></div>
<noscript>This page needs JavaScript; the raw document is at <a href="/openapi.json">/openapi.json</a>.</noscript>
<script src="/docs/assets/swagger-ui-bundle.js?v="#,
    swagger_ui_version!(),
    r#""></script>
<script src="/docs/assets/tessera-docs.js"></script>
</body>
</html>
"#
);

/// Starts the UI (a separate file rather than an inline script, so a strict CSP can apply).
const INIT_JS: &str = r##"window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    // No badge from the online validator: the page must not contact anything but this server.
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    persistAuthorization: true,
    tryItOutEnabled: false
  });
});
"##;

const JS: &str = "text/javascript; charset=utf-8";
/// Swagger UI's files change only with their version, which is in their URLs.
const CACHE_LONG: &str = "public, max-age=31536000, immutable";
/// Our own small files are revalidated.
const CACHE_SHORT: &str = "no-cache";

struct Asset {
    name: &'static str,
    bytes: &'static [u8],
    content_type: &'static str,
    cache: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "swagger-ui-bundle.js",
        bytes: include_bytes!("../assets/swagger-ui/swagger-ui-bundle.js"),
        content_type: JS,
        cache: CACHE_LONG,
    },
    Asset {
        name: "swagger-ui.css",
        bytes: include_bytes!("../assets/swagger-ui/swagger-ui.css"),
        content_type: "text/css; charset=utf-8",
        cache: CACHE_LONG,
    },
    Asset {
        name: "favicon-32x32.png",
        bytes: include_bytes!("../assets/swagger-ui/favicon-32x32.png"),
        content_type: "image/png",
        cache: CACHE_LONG,
    },
    Asset {
        name: "tessera-docs.js",
        bytes: INIT_JS.as_bytes(),
        content_type: JS,
        cache: CACHE_SHORT,
    },
];

/// `GET /docs` and `GET /docs/assets/{file}`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/docs", get(index))
        .route("/docs/assets/{file}", get(asset))
}

async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE_SHORT),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        INDEX_HTML,
    )
        .into_response()
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == file) {
        Some(a) => (
            [
                (header::CONTENT_TYPE, a.content_type),
                (header::CACHE_CONTROL, a.cache),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            a.bytes,
        )
            .into_response(),
        None => {
            let body = serde_json::json!({"error": {
                "code": "not_found",
                "message": format!("docs asset `{file}` not found"),
                "details": null
            }});
            (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Values of `src="..."` and `href="..."` attributes.
    fn links(html: &str) -> Vec<&str> {
        let mut out = Vec::new();
        for attr in ["src=\"", "href=\""] {
            for (i, _) in html.match_indices(attr) {
                let rest = &html[i + attr.len()..];
                out.push(&rest[..rest.find('"').unwrap()]);
            }
        }
        out
    }

    #[test]
    fn assets_are_embedded_and_the_page_stays_local() {
        for a in ASSETS {
            assert!(a.bytes.len() > 300, "{} is too small", a.name);
        }
        let bundle = ASSETS[0].bytes;
        assert!(bundle.len() > 1_000_000);
        assert!(
            std::str::from_utf8(bundle)
                .unwrap()
                .contains("SwaggerUIBundle")
        );
        let links = links(INDEX_HTML);
        assert_eq!(links.len(), 5);
        for link in &links {
            assert!(
                link.starts_with("/docs/assets/") || *link == "/openapi.json",
                "{link}"
            );
            let file = link.trim_start_matches("/docs/assets/");
            let file = file.split('?').next().unwrap();
            assert!(*link == "/openapi.json" || ASSETS.iter().any(|a| a.name == file));
        }
        assert!(INDEX_HTML.contains(&format!("?v={SWAGGER_UI_VERSION}")));
        for text in [INDEX_HTML, INIT_JS] {
            assert!(!text.contains("http:") && !text.contains("https:") && !text.contains("//cdn"));
        }
        assert!(INIT_JS.contains(r#"url: "/openapi.json","#));
        assert!(INIT_JS.contains("validatorUrl: null"));
    }

    /// Minimal HTTP/1.1 GET: (status, head, body).
    async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8(raw[..split].to_vec())
            .unwrap()
            .to_lowercase();
        let status = head[9..12].parse().unwrap();
        (status, head, raw[split + 4..].to_vec())
    }

    #[tokio::test]
    async fn serves_the_page_and_assets() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app: Router = router();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let (status, head, body) = get(addr, "/docs").await;
        assert_eq!(status, 200);
        assert!(head.contains("content-type: text/html; charset=utf-8"));
        assert_eq!(body, INDEX_HTML.as_bytes());

        let (status, head, body) = get(addr, "/docs/assets/swagger-ui.css?v=5.35.0").await;
        assert_eq!(status, 200);
        assert!(head.contains("content-type: text/css"));
        assert!(head.contains("cache-control: public, max-age=31536000, immutable"));
        assert_eq!(body.len(), ASSETS[1].bytes.len());

        let (status, head, _) = get(addr, "/docs/assets/swagger-ui-bundle.js").await;
        assert_eq!(status, 200);
        assert!(head.contains("content-type: text/javascript"));

        let (status, _, body) = get(addr, "/docs/assets/..%2Fsecret").await;
        assert_eq!(status, 404);
        let err: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(err["error"]["code"], "not_found");
    }
}
