//! HTTP for tests: `GET` a component's `/health` or `/metrics` (through `common::http::get`)
//! and read a Prometheus metric out of the text format.

use std::net::SocketAddr;
use std::time::Duration;

/// `GET http://<addr><path>`: the status code and the body as text.
pub async fn http_get(
    addr: SocketAddr,
    path: &str,
) -> Result<(u16, String), common::http::HttpError> {
    let response = common::http::get(addr, path, Duration::from_secs(10)).await?;
    let status = response.status().as_u16();
    Ok((
        status,
        String::from_utf8_lossy(response.body()).into_owned(),
    ))
}

/// The sum of the values of the metric lines starting with `prefix` (0 when there is none).
pub fn metric_sum(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
