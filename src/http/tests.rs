use axum::extract::rejection::BytesRejection;
use bytes::Bytes;
use serde_json::Value;

use super::*;

/// A route that reads its body like the fake channel's, behind the
/// same limit; the flag tells whether the handler ran.
fn limited_echo() -> (Router, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = ran.clone();
    let echo = move |body: Result<Bytes, BytesRejection>| async move {
        seen.store(true, std::sync::atomic::Ordering::SeqCst);
        parse_body::<Value>(body).map(Json)
    };
    (limit_bodies(Router::new().route("/", post(echo))), ran)
}

async fn send(app: Router, req: axum::extract::Request) -> (StatusCode, Value) {
    use tower::ServiceExt;
    let res = app.oneshot(req).await.unwrap();
    let status = res.status();
    let body = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn a_declared_oversize_body_is_refused_unread() {
    let (app, ran) = limited_echo();
    let req = axum::http::Request::post("/")
        .header("content-length", MAX_BODY_BYTES + 1)
        .body(axum::body::Body::from("{}"))
        .unwrap();
    let (status, body) = send(app, req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        body["error"],
        "request body is over the limit of 2097152 bytes"
    );
    assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
}

#[tokio::test]
async fn an_undeclared_oversize_body_is_refused_while_read() {
    let (app, ran) = limited_echo();
    // Chunked: no length is declared, 3 MiB arrive in 64 KiB pieces.
    let chunks = (0..48).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 64 << 10])));
    let req = axum::http::Request::post("/")
        .body(axum::body::Body::from_stream(futures_util::stream::iter(
            chunks,
        )))
        .unwrap();
    let (status, body) = send(app, req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        body["error"],
        "request body is over the limit of 2097152 bytes"
    );
    assert!(ran.load(std::sync::atomic::Ordering::SeqCst));
}

#[tokio::test]
async fn a_body_at_the_limit_is_read() {
    let (app, _) = limited_echo();
    let mut json = vec![b' '; MAX_BODY_BYTES - 2];
    json.extend_from_slice(b"{}");
    let req = axum::http::Request::post("/")
        .body(axum::body::Body::from(json))
        .unwrap();
    assert_eq!(send(app, req).await, (StatusCode::OK, json!({})));
}

/// A guarded POST route that echoes JSON, and the status of a request.
async fn guarded(token: Option<&str>, req: axum::http::request::Builder, body: &str) -> StatusCode {
    use tower::ServiceExt;
    let echo =
        |body: Result<Bytes, BytesRejection>| async move { parse_body::<Value>(body).map(Json) };
    let app = guard(
        Router::new().route("/x", post(echo).get(|| async { "ok" })),
        token.map(Secret::new),
    );
    let req = req.body(axum::body::Body::from(body.to_owned())).unwrap();
    app.oneshot(req).await.unwrap().status()
}

#[tokio::test]
async fn with_a_token_every_guarded_route_needs_it() {
    let token = Some("0123456789abcdef-token");
    let get = || axum::http::Request::get("/x");
    assert_eq!(guarded(token, get(), "").await, StatusCode::UNAUTHORIZED);
    let wrong = get().header("authorization", "Bearer 0123456789abcdef-tokeN");
    assert_eq!(guarded(token, wrong, "").await, StatusCode::UNAUTHORIZED);
    let basic = get().header("authorization", "Basic 0123456789abcdef-token");
    assert_eq!(guarded(token, basic, "").await, StatusCode::UNAUTHORIZED);
    let right = get().header("authorization", "Bearer 0123456789abcdef-token");
    assert_eq!(guarded(token, right, "").await, StatusCode::OK);
    // Without a token (loopback only) nothing is asked.
    assert_eq!(guarded(None, get(), "").await, StatusCode::OK);
}

#[tokio::test]
async fn a_body_is_read_only_when_declared_json() {
    let post = |ct: Option<&str>| {
        let r = axum::http::Request::post("/x");
        match ct {
            Some(ct) => r.header("content-type", ct),
            None => r.header("content-length", "2"),
        }
    };
    for refused in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
    ] {
        assert_eq!(
            guarded(None, post(refused), "{}").await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{refused:?}"
        );
    }
    for ok in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
    ] {
        assert_eq!(
            guarded(None, post(Some(ok)), "{}").await,
            StatusCode::OK,
            "{ok}"
        );
    }
}

#[test]
fn host_names_other_than_ours_are_refused() {
    let extra = ["pocketbrain.lan".to_owned()];
    for ok in [
        "127.0.0.1:8787",
        "127.0.0.1",
        "192.168.1.20:8787",
        "[::1]:8787",
        "[::1]",
        "localhost:8787",
        "LocalHost",
        "localhost.",
        "app.localhost:3000",
        "pocketbrain.lan:8787",
        "PocketBrain.LAN",
    ] {
        assert!(host_allowed(ok, &extra), "{ok} refused");
    }
    for bad in [
        "evil.example:8787",
        "evil.example",
        "localhost.evil.example",
        "pocketbrain.lan.evil.example",
        "127.0.0.1.nip.io",
        "[::1",
        "[not-an-ip]:80",
        "localhost:http",
        "localhost:",
        "",
        "\u{fffd}",
    ] {
        assert!(!host_allowed(bad, &extra), "{bad} allowed");
    }
    assert!(!host_allowed("pocketbrain.lan", &[]));
}

#[tokio::test]
async fn every_route_refuses_a_foreign_host() {
    use tower::ServiceExt;
    let app = only_known_hosts(
        Router::new().route("/x", get(|| async { "ok" })),
        vec!["box.lan".to_owned()].into(),
    );
    let call = |host: Option<&'static str>, path: &'static str| {
        let app = app.clone();
        async move {
            let mut req = axum::http::Request::get(path);
            if let Some(h) = host {
                req = req.header(header::HOST, h);
            }
            app.oneshot(req.body(axum::body::Body::empty()).unwrap())
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(call(Some("127.0.0.1:1"), "/x").await, StatusCode::OK);
    assert_eq!(call(Some("box.lan:1"), "/x").await, StatusCode::OK);
    assert_eq!(
        call(Some("rebind.evil:1"), "/x").await,
        StatusCode::MISDIRECTED_REQUEST
    );
    assert_eq!(
        call(Some("rebind.evil:1"), "/nope").await,
        StatusCode::MISDIRECTED_REQUEST
    );
    assert_eq!(call(None, "/x").await, StatusCode::BAD_REQUEST);
}
