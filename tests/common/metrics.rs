//! `/metrics` as Prometheus reads it: the metrics router served on a listener of its own,
//! scraped over HTTP, and one sample read from the text it serves.

/// The metrics router, served on its own listener for as long as the test runs.
pub struct MetricsEndpoint {
    url: String,
}

impl MetricsEndpoint {
    /// Serves `router` (from `tenantatlas::server::metrics::router`) on a random local port.
    pub async fn serve(router: axum::Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the metrics listener");
        let url = format!(
            "http://{}/metrics",
            listener.local_addr().expect("the listener's address")
        );
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { url }
    }

    /// The text `/metrics` answers now (it must answer 200).
    pub async fn scrape(&self) -> String {
        let response = reqwest::get(&self.url).await.expect("/metrics answers");
        assert_eq!(response.status(), 200, "/metrics answers 200");
        response.text().await.expect("/metrics is read")
    }
}

/// What `router` serves at `/metrics`, read once.
pub async fn scrape_once(router: axum::Router) -> String {
    MetricsEndpoint::serve(router).await.scrape().await
}

/// The value of the sample `name{labels}` (labels as Prometheus writes them), if present.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}
