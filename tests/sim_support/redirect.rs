//! A server whose every answer the test scripts, status and headers included: what a redirecting
//! host, a proxy in front of the token endpoint or a broken token endpoint sends, which neither
//! the simulator nor [`super::mock`] can. Every request is recorded, token requests included.

use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use tenantatlas::server::graph::GraphConfig;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub body: String,
}

impl Seen {
    /// Whether it is a POST to a token endpoint.
    pub fn is_token_request(&self) -> bool {
        self.method == "POST" && self.target.ends_with("/oauth2/v2.0/token")
    }
}

/// What the server answers to one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    /// Never answers (the connection stays open).
    pub hang: bool,
}

impl Reply {
    /// `status` with `body`, as JSON.
    pub fn json(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: body.into(),
            hang: false,
        }
    }

    /// `status` with `body` as HTML, as a proxy answers.
    pub fn html(status: u16, body: impl Into<String>) -> Self {
        Self {
            headers: vec![("content-type", "text/html".into())],
            ..Self::json(status, body)
        }
    }

    /// A redirect (`status` 301, 302, 307, 308) to `location`.
    pub fn redirect(status: u16, location: impl Into<String>) -> Self {
        Self {
            headers: vec![("location", location.into())],
            ..Self::json(status, "")
        }
    }

    /// A token endpoint's success with `access_token`, valid for an hour.
    pub fn token(access_token: &str) -> Self {
        let body = serde_json::json!({"access_token": access_token, "expires_in": 3600});
        Self::json(200, body.to_string())
    }

    /// An empty page of a Graph collection.
    pub fn empty_page() -> Self {
        Self::json(200, r#"{"value": []}"#)
    }

    /// No answer at all.
    pub fn hang() -> Self {
        Self {
            hang: true,
            ..Self::json(200, "")
        }
    }
}

/// A running scripted server; it stops with the test's runtime.
pub struct Scripted {
    /// `http://127.0.0.1:port`: the login base; Graph is under `/beta`.
    pub url: String,
    requests: Arc<Mutex<Vec<Seen>>>,
}

impl Scripted {
    /// Serves every request with `answer`.
    pub async fn start(answer: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&requests);
        let answer = Arc::new(answer);
        let app = axum::Router::new().fallback(move |request: Request| {
            let (recorded, answer) = (Arc::clone(&recorded), Arc::clone(&answer));
            async move {
                let method = request.method().to_string();
                let target = request
                    .uri()
                    .path_and_query()
                    .map_or_else(String::new, |p| p.as_str().to_owned());
                let body = to_bytes(request.into_body(), 1 << 20)
                    .await
                    .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                    .unwrap_or_default();
                let seen = Seen {
                    method,
                    target,
                    body,
                };
                recorded.lock().expect("not poisoned").push(seen.clone());
                let reply = answer(&seen);
                if reply.hang {
                    std::future::pending::<()>().await;
                }
                let mut response = Response::builder()
                    .status(StatusCode::from_u16(reply.status).expect("a status"));
                for (name, value) in &reply.headers {
                    response = response.header(*name, value);
                }
                response.body(Body::from(reply.body)).expect("a response")
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, requests }
    }

    /// The Graph base it serves, `{url}/beta`.
    pub fn graph_url(&self) -> String {
        format!("{}/beta", self.url)
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.requests.lock().expect("not poisoned").clone()
    }

    /// How many token requests it got.
    pub fn token_requests(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.is_token_request())
            .count()
    }

    /// The tests' fast configuration with this server as token endpoint and Graph.
    pub fn config(&self) -> GraphConfig {
        super::fast_config_for(&self.url, &self.graph_url())
    }
}
