//! The HTTP side: `/health`, the `/routes` API (same JSON as the original), the `/logs` live
//! stream, Prometheus `/metrics`, and an optional bearer token for `/routes` and `/logs`.
//!
//! Everything here is outside input: a bad path, query, header or body is a 4xx, never a panic.
//! Request bodies are bounded ([`MAX_BODY_BYTES`]); hyper bounds the request head (100 headers,
//! about 400 KiB); `/logs` streams are bounded by [`Taps`].

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures_util::stream;
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use crate::message::Message;
use crate::pump::Pump;
use crate::route::Route;
use crate::routes::{AddRouteError, RouteTable};
use crate::tap::{TapFilter, TapGuard, TapReceiver, Taps};

/// Longest request body accepted (a route object is a few hundred bytes): `413` beyond.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Length of a container's short ID, what `/logs/id:` takes.
const SHORT_ID_LEN: usize = 12;

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct HttpState {
    pub routes: Arc<RouteTable>,
    pub taps: Arc<Taps>,
    /// Set once Docker is connected (the `/logs/id:` check needs the attached containers).
    pub pump: Arc<OnceLock<Arc<Pump>>>,
    pub token: Option<String>,
    /// Ends `/logs` streams on shutdown.
    pub shutdown: CancellationToken,
}

/// The complete router.
pub fn router(state: HttpState) -> Router {
    let metrics = common::http::metrics_router(state.routes.metrics().registry.clone(), "/metrics");
    // The bearer token guards every route registered before the layer: /routes and /logs.
    Router::new()
        .route("/routes", get(list_routes).post(create_route))
        .route("/routes/{id}", get(get_route).delete(delete_route))
        .route("/logs", get(logs_all))
        .route("/logs/{filter}", get(logs_filtered))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .route("/health", any(health))
        .with_state(state)
        .merge(metrics)
        .fallback(not_found)
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, [(header::CONTENT_TYPE, TEXT)], body.into()).into_response()
}

async fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "404 page not found\n")
}

async fn health() -> Response {
    text(StatusCode::OK, "Healthy!\n")
}

/// Answers 401 to a request without the configured bearer token (if one is configured).
async fn require_token(State(state): State<HttpState>, request: Request, next: Next) -> Response {
    let Some(token) = state.token.as_deref() else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Constant time: how long the comparison takes tells nothing about the token.
    if given.is_some_and(|given| bool::from(given.as_bytes().ct_eq(token.as_bytes()))) {
        return next.run(request).await;
    }
    let mut response = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn pretty_json<T: serde::Serialize>(value: &T) -> String {
    let mut body = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into());
    body.push('\n');
    body
}

async fn list_routes(State(state): State<HttpState>) -> Response {
    let body = pretty_json(&state.routes.list());
    (StatusCode::OK, [(header::CONTENT_TYPE, JSON)], body).into_response()
}

async fn create_route(State(state): State<HttpState>, body: Bytes) -> Response {
    if body.iter().all(u8::is_ascii_whitespace) {
        return text(StatusCode::BAD_REQUEST, "Bad request: EOF\n");
    }
    let route: Route = match serde_json::from_slice(&body) {
        Ok(route) => route,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("Bad request: {e}\n")),
    };
    // As in the original, a given `id` replaces the route with that ID (its sender stops and
    // its connection closes; its file is overwritten). The ID names a file under ROUTESPATH:
    // `RouteTable::add` refuses any that is not a plain name (`400 Bad route: bad route id`).
    // Adding writes the route's file: off the async workers.
    let routes = state.routes.clone();
    let added = tokio::task::spawn_blocking(move || routes.add(route, true)).await;
    let Ok(added) = added else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "Route not added\n");
    };
    match added {
        Ok(route) => (
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, JSON)],
            pretty_json(&route),
        )
            .into_response(),
        Err(AddRouteError::Route(e)) => text(StatusCode::BAD_REQUEST, format!("Bad route: {e}\n")),
        Err(e @ AddRouteError::Persist(_)) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Cannot persist route: {e}\n"),
        ),
    }
}

async fn get_route(State(state): State<HttpState>, Path(id): Path<String>) -> Response {
    match state.routes.get(&id) {
        Some(route) => text(StatusCode::OK, pretty_json(&route)),
        None => not_found().await,
    }
}

async fn delete_route(State(state): State<HttpState>, Path(id): Path<String>) -> Response {
    // Removing deletes the route's file: off the async workers.
    let routes = state.routes.clone();
    let removed = tokio::task::spawn_blocking(move || routes.remove(&id)).await;
    let Ok(removed) = removed else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "Route not removed\n");
    };
    match removed {
        Ok(true) => StatusCode::OK.into_response(),
        Ok(false) => not_found().await,
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Cannot remove route file: {e}\n"),
        ),
    }
}

async fn logs_all(
    State(state): State<HttpState>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    stream_logs(state, query, None, request).await
}

async fn logs_filtered(
    State(state): State<HttpState>,
    Path(filter): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    stream_logs(state, query, Some(filter), request).await
}

async fn stream_logs(
    state: HttpState,
    query: HashMap<String, String>,
    filter: Option<String>,
    request: Request,
) -> Response {
    let headers = request.headers();
    let mut tap = TapFilter {
        source: query.get("sources").cloned(),
        ..TapFilter::default()
    };
    let mut multi = true;
    if let Some((predicate, value)) = filter.as_deref().and_then(|f| f.split_once(':')) {
        if value.is_empty()
            || !predicate.chars().all(|c| c.is_ascii_alphabetic())
            || predicate.is_empty()
        {
            return not_found().await;
        }
        match predicate {
            "id" => {
                // By `get`, not by index: the value is any UTF-8 (a multi-byte character
                // across byte 12 is no ID, not a panic).
                let Some(short) = value.get(..SHORT_ID_LEN) else {
                    return not_found().await;
                };
                if !state.pump.get().is_some_and(|p| p.is_attached(short)) {
                    return not_found().await;
                }
                tap.id = Some(value.to_owned());
                multi = false;
            }
            "name" => {
                tap.name = Some(value.to_owned());
                multi = value.contains('*');
            }
            _ => {}
        }
    } else if filter.is_some() {
        return not_found().await;
    }
    let websocket = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if websocket {
        // As the original (golang.org/x/net/websocket): no Origin, no stream; filter `source`.
        if !headers.contains_key(header::ORIGIN) {
            return StatusCode::FORBIDDEN.into_response();
        }
        tap.source = query.get("source").cloned();
        let (mut parts, _) = request.into_parts();
        let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
            Ok(upgrade) => upgrade,
            Err(rejection) => return rejection.into_response(),
        };
        let (rx, guard) = match state.taps.open(tap) {
            Ok(tap) => tap,
            Err(e) => return too_many_taps(e),
        };
        let shutdown = state.shutdown.clone();
        return upgrade.on_upgrade(move |socket| send_frames(socket, rx, guard, shutdown));
    }
    let json = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) == Some(JSON);
    let colors = query.get("colors").map(String::as_str) != Some("off");
    let (mut rx, guard) = match state.taps.open(tap) {
        Ok(tap) => tap,
        Err(e) => return too_many_taps(e),
    };
    // Like the original, nothing (not even the status line) is sent before the first line.
    let first = tokio::select! {
        _ = state.shutdown.cancelled() => None,
        first = rx.recv() => first,
    };
    let Some(first) = first else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let mut format = LineFormat {
        json,
        multi,
        colors,
        width: 16,
        seen: Vec::new(),
    };
    let shutdown = state.shutdown.clone();
    let first_chunk = format.format(&first);
    let body = stream::unfold(
        (Some(first_chunk), rx, format, guard, shutdown),
        |(pending, mut rx, mut format, guard, shutdown)| async move {
            if let Some(chunk) = pending {
                return Some((
                    Ok::<_, std::convert::Infallible>(chunk),
                    (None, rx, format, guard, shutdown),
                ));
            }
            let next = tokio::select! {
                _ = shutdown.cancelled() => None,
                next = rx.recv() => next,
            }?;
            let chunk = format.format(&next);
            Some((Ok(chunk), (None, rx, format, guard, shutdown)))
        },
    );
    let content_type = if json { JSON } else { "text/plain" };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(body),
    )
        .into_response()
}

/// `429` with `Retry-After`: the client may come back when a stream has closed.
fn too_many_taps(e: crate::tap::TooManyTaps) -> Response {
    let mut response = text(StatusCode::TOO_MANY_REQUESTS, format!("{e}\n"));
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
    response
}

/// Sends every tapped line as one JSON text frame until the client goes or shutdown.
async fn send_frames(
    mut socket: WebSocket,
    mut rx: TapReceiver,
    _guard: TapGuard,
    shutdown: CancellationToken,
) {
    let mut format = LineFormat {
        json: true,
        multi: false,
        colors: false,
        width: 16,
        seen: Vec::new(),
    };
    loop {
        // The client's frames are read too, so a client that goes away (or closes) ends the
        // stream and frees its tap at once, not at the next line that matches it.
        let next = tokio::select! {
            _ = shutdown.cancelled() => None,
            next = rx.recv() => next,
            incoming = socket.recv() => match incoming {
                Some(Ok(WsMessage::Close(_)) | Err(_)) | None => None,
                Some(Ok(_)) => continue,
            },
        };
        let Some(message) = next else { break };
        let text = String::from_utf8_lossy(&format.format(&message)).into_owned();
        if socket.send(WsMessage::Text(text.into())).await.is_err() {
            break;
        }
    }
    let _ = socket.send(WsMessage::Close(None)).await;
}

/// How one `/logs` connection prints lines.
#[derive(Debug)]
struct LineFormat {
    json: bool,
    multi: bool,
    colors: bool,
    /// Grows to the longest name seen on this connection.
    width: usize,
    /// Names in the order first seen (their colour index).
    seen: Vec<String>,
}

impl LineFormat {
    fn format(&mut self, m: &Message) -> Bytes {
        let data = String::from_utf8_lossy(&m.data);
        if self.json {
            return Bytes::from(json_line(m, &data));
        }
        if !self.multi {
            return Bytes::from(format!("{data}\n"));
        }
        let name = m.container.bare_name();
        self.width = self.width.max(name.chars().count());
        let padded = format!("{name:>width$}|{data}", width = self.width);
        if !self.colors {
            return Bytes::from(format!("{padded}\n"));
        }
        let index = match self.seen.iter().position(|n| n == name) {
            Some(i) => i,
            None => {
                self.seen.push(name.to_owned());
                self.seen.len() - 1
            }
        };
        let bold = if index % 14 <= 6 { "1;" } else { "" };
        let code = 7 - index % 7;
        Bytes::from(format!("\x1b[{bold}3{code}m{padded}\x1b[0m\n"))
    }
}

/// A `/logs` JSON message as the original's `json.MarshalIndent(Message, "", "  ")` + LF: keys
/// `Container` (the whole inspect result, serialized once per container and spliced in),
/// `Source`, `Data`, `Time` (RFC 3339 with nanoseconds, trailing zeros trimmed).
fn json_line(m: &Message, data: &str) -> String {
    let container = m.container.inspect_json();
    let data = crate::message::go_json_escape(&serde_json::to_string(data).unwrap_or_default());
    let time = m.time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let time = match time.split_once('.') {
        Some((seconds, fraction)) => {
            let digits = fraction.trim_end_matches('Z').trim_end_matches('0');
            if digits.is_empty() {
                format!("{seconds}Z")
            } else {
                format!("{seconds}.{digits}Z")
            }
        }
        None => time,
    };
    format!(
        "{{\n  \"Container\": {container},\n  \"Source\": \"{}\",\n  \"Data\": {data},\n  \"Time\": \"{time}\"\n}}\n",
        m.source.as_str()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{ContainerInfo, Source};
    use chrono::Utc;

    fn line(name: &str, data: &str) -> Message {
        Message {
            container: Arc::new(ContainerInfo {
                id: "abc".into(),
                name: format!("/{name}"),
                ..ContainerInfo::default()
            }),
            source: Source::Stdout,
            data: Bytes::copy_from_slice(data.as_bytes()),
            time: Utc::now(),
        }
    }

    #[test]
    fn log_stream_lines_match_the_original() {
        let mut f = LineFormat {
            json: false,
            multi: true,
            colors: true,
            width: 16,
            seen: Vec::new(),
        };
        assert_eq!(
            f.format(&line("web", "hello")),
            "\x1b[1;37m             web|hello\x1b[0m\n"
        );
        assert_eq!(
            f.format(&line("db", "x")),
            "\x1b[1;36m              db|x\x1b[0m\n"
        );
        let mut plain = LineFormat {
            json: false,
            multi: true,
            colors: false,
            width: 16,
            seen: Vec::new(),
        };
        assert_eq!(
            plain.format(&line("web", "hello")),
            "             web|hello\n"
        );
        plain.format(&line(&"n".repeat(20), "x"));
        assert_eq!(
            plain.format(&line("web", "hello")),
            format!("{}web|hello\n", " ".repeat(17))
        );
        let mut single = LineFormat {
            json: false,
            multi: false,
            colors: true,
            width: 16,
            seen: Vec::new(),
        };
        assert_eq!(single.format(&line("web", "hello")), "hello\n");
        let mut many = LineFormat {
            json: false,
            multi: true,
            colors: true,
            width: 3,
            seen: Vec::new(),
        };
        let codes: Vec<String> = (0..15)
            .map(|i| {
                let out = many.format(&line(&format!("c{i:02}"), "x"));
                String::from_utf8_lossy(&out)
                    .split('m')
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        assert_eq!(codes[0], "\x1b[1;37");
        assert_eq!(codes[6], "\x1b[1;31");
        assert_eq!(codes[7], "\x1b[37");
        assert_eq!(codes[14], "\x1b[1;37");
    }

    #[test]
    fn json_lines_have_the_original_keys_in_order_and_the_whole_inspect_object() {
        let mut f = LineFormat {
            json: true,
            multi: true,
            colors: true,
            width: 16,
            seen: Vec::new(),
        };
        let inspect = bollard::models::ContainerInspectResponse {
            id: Some("abc".into()),
            name: Some("/web".into()),
            path: Some("/bin/sh".into()),
            config: Some(bollard::models::ContainerConfig {
                labels: Some(HashMap::from([("a".into(), "<b>&".into())])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let container = ContainerInfo {
            name: "/web".into(),
            inspect: Arc::new(inspect),
            ..ContainerInfo::default()
        };
        let mut message = line("web", "say <hi>");
        message.container = Arc::new(container.clone());
        message.time = "2021-12-06T15:04:05.700Z".parse().unwrap();
        let out = String::from_utf8(f.format(&message).to_vec()).unwrap();
        let keys: Vec<usize> = ["\"Container\"", "\"Source\"", "\"Data\"", "\"Time\""]
            .iter()
            .map(|k| out.find(k).unwrap())
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{out}");
        assert!(
            out.starts_with("{\n  \"Container\": {\n    \"Id\": \"abc\",\n"),
            "{out}"
        );
        assert!(out.contains("\n    \"Name\": \"/web\""), "{out}");
        assert!(out.contains("\"Path\": \"/bin/sh\""), "{out}");
        assert!(out.contains("\"a\": \"\\u003cb\\u003e\\u0026\""), "{out}");
        assert!(
            out.contains("\n  \"Data\": \"say \\u003chi\\u003e\",\n"),
            "{out}"
        );
        assert!(
            out.ends_with("\n  \"Time\": \"2021-12-06T15:04:05.7Z\"\n}\n"),
            "{out}"
        );
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(json["Container"]["Config"]["Labels"]["a"], "<b>&");
        assert_eq!(json["Data"], "say <hi>");

        // A rename shows in the next line; whole seconds have no fraction.
        message.container = Arc::new(container.renamed("/web2".into()));
        message.time = "2021-12-06T15:04:05Z".parse().unwrap();
        let out = String::from_utf8(f.format(&message).to_vec()).unwrap();
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(json["Container"]["Name"], "/web2");
        assert_eq!(json["Time"], "2021-12-06T15:04:05Z");
    }
}
