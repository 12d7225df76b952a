//! A tiny stand-in for a broken or hostile Graph tenant, over real HTTP: a token endpoint whose
//! answer the test chooses, and Graph GETs answered by a closure, each request recorded. The
//! simulator answers as Graph does; this answers as Graph must never, to prove the client copes.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::response::Response;
use tenantatlas::server::graph::{GraphClient, GraphConfig};

/// What the Graph closure answers: a status and a JSON body.
pub type Answer = (u16, String);

/// How the mock sends its answers' bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// With a `Content-Length`.
    Length,
    /// Chunked in pieces of 1 KiB, without a length: the client learns the size by reading.
    Chunked,
}

/// A running mock; it stops with the test's runtime.
pub struct MockGraph {
    /// Base of the token endpoint (`{login_url}/{tenant}/oauth2/v2.0/token`).
    pub login_url: String,
    /// Base of the Graph requests, e.g. `http://127.0.0.1:1234/beta`.
    pub graph_url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl MockGraph {
    /// Serves `token_body` (200) at the token endpoint and every other request with `answer`,
    /// called with the Graph base and the request's path and query (`/beta/deviceManagement/…`).
    pub async fn start(
        token_body: &str,
        transfer: Transfer,
        answer: impl Fn(&str, &str) -> Answer + Send + Sync + 'static,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let root = format!("http://{}", listener.local_addr().expect("bound"));
        let graph_url = format!("{root}/beta");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let token_body = token_body.to_owned();
        let (recorded, base) = (Arc::clone(&requests), graph_url.clone());
        let answer = Arc::new(answer);
        let app = axum::Router::new().fallback(move |request: Request| {
            let (token_body, recorded, base, answer) = (
                token_body.clone(),
                Arc::clone(&recorded),
                base.clone(),
                Arc::clone(&answer),
            );
            async move {
                let target = request
                    .uri()
                    .path_and_query()
                    .map_or_else(String::new, |p| p.as_str().to_owned());
                let (status, body) =
                    if request.method() == Method::POST && target.ends_with("/oauth2/v2.0/token") {
                        (200, token_body)
                    } else {
                        recorded.lock().expect("not poisoned").push(target.clone());
                        answer(&base, &target)
                    };
                let body = match transfer {
                    Transfer::Length => Body::from(body),
                    Transfer::Chunked => {
                        let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body
                            .into_bytes()
                            .chunks(1024)
                            .map(|chunk| Ok(chunk.to_vec()))
                            .collect();
                        Body::from_stream(futures::stream::iter(chunks))
                    }
                };
                Response::builder()
                    .status(StatusCode::from_u16(status).expect("a status"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .expect("a response")
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            login_url: root,
            graph_url,
            requests,
        }
    }

    /// [`MockGraph::start`] with a token valid for an hour.
    pub async fn with_token(answer: impl Fn(&str, &str) -> Answer + Send + Sync + 'static) -> Self {
        Self::start(
            r#"{"access_token":"mock-token","expires_in":3600}"#,
            Transfer::Length,
            answer,
        )
        .await
    }

    /// Every Graph request so far (path and query), in order; token requests are left out.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("not poisoned").clone()
    }

    /// The tests' fast configuration pointed at the mock.
    pub fn config(&self) -> GraphConfig {
        super::fast_config_for(&self.login_url, &self.graph_url)
    }

    /// A client with [`MockGraph::config`].
    pub fn client(&self) -> GraphClient {
        GraphClient::new(self.config()).expect("client builds")
    }
}
