//! The browser bundle under `/pkg`: precompressed copies (brotli, gzip) chosen by the request's
//! `Accept-Encoding`, and caching that follows the file name. `scripts/build.sh` names the
//! wasm and its JS glue after their content (`tenantatlas.<hash>.wasm`) and lists the hashes in
//! `hash.txt` next to the server binary, where Leptos reads them to link the right files; those
//! files never change, so browsers keep them for a year without asking again. Everything else
//! (the stylesheet, an unhashed development bundle) is revalidated on each use.

use std::path::Path;

use axum::{
    extract::Request,
    http::{header, HeaderValue},
    middleware::{self, Next},
    response::Response,
    Router,
};
use tower_http::services::ServeDir;

/// The name of the file, next to the server binary, that lists the bundle's content hashes.
pub const HASH_FILE: &str = "hash.txt";

/// Whether the bundle was built with hashed names: `hash.txt` lies next to this binary.
pub fn hashed_bundle() -> bool {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(HASH_FILE)))
        .is_some_and(|file| file.is_file())
}

/// `/pkg/…` served from `site_root/pkg`.
pub fn pkg_router<S: Clone + Send + Sync + 'static>(site_root: &Path) -> Router<S> {
    let files = ServeDir::new(site_root.join("pkg"))
        .precompressed_br()
        .precompressed_gzip();
    Router::new()
        .nest_service("/pkg", files)
        .layer(middleware::from_fn(cache_by_name))
}

async fn cache_by_name(request: Request, next: Next) -> Response {
    let immutable = is_content_named(request.uri().path());
    let mut response = next.run(request).await;
    if response.status().is_success() || response.status().as_u16() == 304 {
        let policy = if immutable {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
    }
    response
}

/// `name.<hash>.ext` with a hash of at least 16 hexadecimal digits, as `build.sh` writes them.
fn is_content_named(path: &str) -> bool {
    let file = path.rsplit('/').next().unwrap_or_default();
    let parts: Vec<&str> = file.split('.').collect();
    parts.len() == 3 && parts[1].len() >= 16 && parts[1].bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::{is_content_named, pkg_router};
    use axum::Router;
    use tokio::net::TcpListener;

    /// A bundle in a folder of its own, served by [`pkg_router`] on a random port.
    async fn serve_bundle() -> (String, std::path::PathBuf) {
        let root = std::env::temp_dir().join(format!("ta-static-{}", uuid::Uuid::new_v4()));
        let pkg = root.join("pkg");
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::write(
            pkg.join("tenantatlas.0123456789abcdef0123.wasm"),
            b"plain wasm",
        )
        .unwrap();
        std::fs::write(
            pkg.join("tenantatlas.0123456789abcdef0123.wasm.gz"),
            b"gzip wasm",
        )
        .unwrap();
        std::fs::write(pkg.join("tenantatlas.css"), b"body {}").unwrap();
        let app: Router = pkg_router(&root);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), root)
    }

    #[tokio::test]
    async fn hashed_files_are_immutable_and_precompressed_others_revalidate() {
        let (base, root) = serve_bundle().await;
        let client = reqwest::Client::new();
        let wasm = format!("{base}/pkg/tenantatlas.0123456789abcdef0123.wasm");

        let gzipped = client
            .get(&wasm)
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(gzipped.status(), 200);
        assert_eq!(gzipped.headers()["content-encoding"], "gzip");
        assert_eq!(
            gzipped.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
        assert_eq!(gzipped.bytes().await.unwrap().as_ref(), b"gzip wasm");

        let plain = client.get(&wasm).send().await.unwrap();
        assert!(plain.headers().get("content-encoding").is_none());
        assert_eq!(plain.bytes().await.unwrap().as_ref(), b"plain wasm");

        let css = client
            .get(format!("{base}/pkg/tenantatlas.css"))
            .send()
            .await
            .unwrap();
        assert_eq!(css.status(), 200);
        assert_eq!(css.headers()["cache-control"], "no-cache");

        let missing = client
            .get(format!("{base}/pkg/nothing.js"))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
        assert!(missing.headers().get("cache-control").is_none());
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn only_content_named_files_are_immutable() {
        assert!(is_content_named(
            "/pkg/tenantatlas.0123456789abcdef0123.wasm"
        ));
        assert!(is_content_named("/pkg/tenantatlas.0123456789abcdef.js"));
        for mutable in [
            "/pkg/tenantatlas.wasm",
            "/pkg/tenantatlas.css",
            "/pkg/tenantatlas.0123.js",
            "/pkg/tenantatlas.xyz0123456789abcdef.js",
            "/pkg/a.0123456789abcdef.b.js",
        ] {
            assert!(!is_content_named(mutable), "{mutable}");
        }
    }
}
