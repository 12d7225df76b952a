//! The browser bundle under `/pkg`: precompressed copies (brotli, gzip) chosen by the request's
//! `Accept-Encoding`, and caching that follows the path. `scripts/build.sh` puts the bundle (the
//! main module and its JS glue, the lazy routes' chunks and their loader, the prefetch map) in a
//! folder named after the content of all its files, `pkg/b-<hash>/`, and names that folder in
//! `hash.txt` next to the server binary; the server links it ([`bundle_dir`]). The files keep the
//! names they import each other by, and never change under their folder's name, so browsers keep
//! them for a year without asking again. Everything else (the stylesheet, a bundle without a
//! folder of its own) is revalidated on each use.

use std::path::Path;

use axum::{
    extract::Request,
    http::{header, HeaderValue, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    Router,
};
use tower_http::services::ServeDir;

/// The name of the file, next to the server binary, that names the bundle's folder.
pub const HASH_FILE: &str = "hash.txt";

/// The bundle's folder under the site root, as Leptos' `site_pkg_dir`: `pkg/b-<hash>` when
/// `hash.txt` next to this binary names one, else `pkg` (tests, a bundle built by other means).
pub fn bundle_dir() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(HASH_FILE)))
        .and_then(|file| std::fs::read_to_string(file).ok())
        .and_then(|text| bundle_hash(&text).map(|hash| format!("pkg/b-{hash}")))
        .unwrap_or_else(|| "pkg".into())
}

/// The `bundle: <hash>` line of `hash.txt`.
fn bundle_hash(text: &str) -> Option<&str> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("bundle:"))
        .map(str::trim)
        .find(|hash| is_hash(hash))
}

/// At least 16 hexadecimal digits, as `build.sh` writes them.
fn is_hash(text: &str) -> bool {
    text.len() >= 16 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `/pkg/…` served from `site_root/pkg`, but not its hidden files.
pub fn pkg_router<S: Clone + Send + Sync + 'static>(site_root: &Path) -> Router<S> {
    let files = ServeDir::new(site_root.join("pkg"))
        .precompressed_br()
        .precompressed_gzip();
    Router::new()
        .nest_service("/pkg", files)
        .layer(middleware::from_fn(cache_by_path))
        .layer(middleware::from_fn(hidden_files_are_404))
}

/// No hidden file is served: a path with a segment that starts with a dot, also once
/// percent-decoded (`%2e`, and `%2f` or `%5c` inside a segment, which `ServeDir` decodes), is
/// a 404. The app's router applies it to every request: Leptos serves the whole site root for
/// paths it has no route for, where the build leaves its own files (`.bundle-source`: the
/// wasm's hash and the build tools' versions; `.bundle-next/`: a bundle half written), and an
/// editor or an older build may leave others. No page, server function or bundle file has such
/// a segment.
pub async fn hidden_files_are_404(request: Request, next: Next) -> Response {
    if names_a_hidden_file(request.uri().path()) {
        return (
            StatusCode::NOT_FOUND,
            "Not found: no page or file has this path.",
        )
            .into_response();
    }
    next.run(request).await
}

/// Whether a segment of `path`, percent-decoded, starts with a dot (`.`, `..` included).
pub fn names_a_hidden_file(path: &str) -> bool {
    percent_decoded(path)
        .split(|&byte| byte == b'/' || byte == b'\\')
        .any(|segment| segment.first() == Some(&b'.'))
}

/// `path` with each `%XX` decoded once (as `ServeDir` reads it); a `%` without two hex digits
/// stays as it is.
fn percent_decoded(path: &str) -> Vec<u8> {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let escaped = (bytes[at] == b'%')
            .then(|| bytes.get(at + 1..at + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                at += 3;
            }
            None => {
                decoded.push(bytes[at]);
                at += 1;
            }
        }
    }
    decoded
}

/// Caching by path ([`in_bundle_folder`]: a year, else revalidated), and `Vary:
/// Accept-Encoding` on every file answer.
async fn cache_by_path(request: Request, next: Next) -> Response {
    let immutable = in_bundle_folder(request.uri().path());
    let mut response = next.run(request).await;
    if response.status().is_success() || response.status().as_u16() == 304 {
        let policy = if immutable {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
        // The answer was chosen by Accept-Encoding (a precompressed copy or the plain file): a
        // shared cache must not hand a brotli copy to a client that did not ask for it.
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    response
}

/// `/pkg/b-<hash>/<file>`: a file of a bundle folder named after its content.
fn in_bundle_folder(path: &str) -> bool {
    let mut parts = path.split('/');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()),
        (Some(""), Some("pkg"), Some(folder), Some(file), None)
            if folder.strip_prefix("b-").is_some_and(is_hash) && !file.is_empty()
    )
}

#[cfg(test)]
mod tests {
    use super::{bundle_hash, in_bundle_folder, pkg_router};
    use axum::Router;
    use tokio::net::TcpListener;

    /// A bundle in a folder of its own, served by [`pkg_router`] on a random port.
    async fn serve_bundle() -> (String, std::path::PathBuf) {
        let root = std::env::temp_dir().join(format!("ta-static-{}", uuid::Uuid::new_v4()));
        let pkg = root.join("pkg");
        let bundle = pkg.join("b-0123456789abcdef0123");
        std::fs::create_dir_all(&bundle).unwrap();
        std::fs::write(bundle.join("tenantatlas.wasm"), b"plain wasm").unwrap();
        std::fs::write(bundle.join("tenantatlas.wasm.gz"), b"gzip wasm").unwrap();
        std::fs::write(pkg.join("tenantatlas.css"), b"body {}").unwrap();
        std::fs::write(pkg.join(".source"), b"sha256 wasm-bindgen 0.2").unwrap();
        std::fs::create_dir_all(pkg.join(".next")).unwrap();
        std::fs::write(pkg.join(".next/tenantatlas.wasm"), b"half written").unwrap();
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
        let wasm = format!("{base}/pkg/b-0123456789abcdef0123/tenantatlas.wasm");

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

    #[tokio::test]
    async fn hidden_files_are_not_served() {
        let (base, root) = serve_bundle().await;
        let client = reqwest::Client::new();
        for path in [
            "/pkg/.source",
            "/pkg/%2esource",
            "/pkg/%2Esource",
            "/pkg/.next/tenantatlas.wasm",
            "/pkg/%2enext/tenantatlas.wasm",
            "/pkg/b-0123456789abcdef0123/../.source",
            // Encoded separators, which `ServeDir` refuses itself.
            "/pkg/%2f.source",
            "/pkg/%5c.source",
            "/pkg/b-0123456789abcdef0123%2f..%2f.source",
            "/pkg/x%2f%2e%2e%2f.next%2ftenantatlas.wasm",
        ] {
            let answer = client.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(answer.status(), 404, "{path}");
            // The reason, never the file.
            let body = answer.text().await.unwrap();
            assert!(body.starts_with("Not found"), "{path}: {body}");
        }
        // The bundle itself still is.
        let wasm = format!("{base}/pkg/b-0123456789abcdef0123/tenantatlas.wasm");
        assert_eq!(client.get(wasm).send().await.unwrap().status(), 200);
        std::fs::remove_dir_all(root).unwrap();
    }

    proptest::proptest! {
        /// A path names a hidden file exactly when one of its segments starts with a dot,
        /// however its bytes are percent-encoded and its segments separated.
        #[test]
        fn hidden_segments_are_found_in_every_spelling(
            segments in proptest::collection::vec("[.a-z0-9-]{1,6}", 1..5),
            encode in proptest::collection::vec(proptest::bool::ANY, 32),
            separators in proptest::collection::vec(
                proptest::sample::select(vec!["/", "//", "%2f", "%2F", "%5c"]), 5),
        ) {
            let expected = segments.iter().any(|segment| segment.starts_with('.'));
            let mut flips = encode.iter().cycle();
            let mut path = String::new();
            for (segment, separator) in segments.iter().zip(&separators) {
                path.push_str(if path.is_empty() { "/" } else { separator });
                for byte in segment.bytes() {
                    if *flips.next().unwrap() {
                        path.push_str(&format!("%{byte:02X}"));
                    } else {
                        path.push(char::from(byte));
                    }
                }
            }
            proptest::prop_assert_eq!(super::names_a_hidden_file(&path), expected, "{}", path);
        }
    }

    #[test]
    fn only_files_of_a_content_named_folder_are_immutable() {
        assert!(in_bundle_folder(
            "/pkg/b-0123456789abcdef0123/tenantatlas.wasm"
        ));
        assert!(in_bundle_folder("/pkg/b-0123456789abcdef/chunk_0.wasm"));
        for mutable in [
            "/pkg/tenantatlas.wasm",
            "/pkg/tenantatlas.css",
            "/pkg/tenantatlas.0123456789abcdef0123.wasm",
            "/pkg/b-0123/tenantatlas.js",
            "/pkg/b-xyz0123456789abcdef/tenantatlas.js",
            "/pkg/0123456789abcdef0123/tenantatlas.js",
            "/pkg/b-0123456789abcdef0123/",
            "/pkg/b-0123456789abcdef0123/inner/tenantatlas.js",
            "/other/b-0123456789abcdef0123/tenantatlas.js",
        ] {
            assert!(!in_bundle_folder(mutable), "{mutable}");
        }
    }

    #[test]
    fn hash_txt_names_the_bundle_folder_only_with_a_hash() {
        assert_eq!(
            bundle_hash("bundle: 0123456789abcdef0123\n"),
            Some("0123456789abcdef0123")
        );
        assert_eq!(
            bundle_hash("js: x\nbundle:0123456789abcdef\n"),
            Some("0123456789abcdef")
        );
        for without in [
            "",
            "js: 0123456789abcdef0123\n",
            "bundle: ../etc\n",
            "bundle: 0123\n",
        ] {
            assert_eq!(bundle_hash(without), None, "{without:?}");
        }
    }
}
