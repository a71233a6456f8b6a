//! The floor for the gateway benchmarks: a store-and-forward HTTP proxy that does nothing else.
//! `passthrough LISTEN DATA_DIR NAME=URL` (the same arguments as the `gateway` example, so
//! `GATEWAY_BIN=…/passthrough bench-gateway.sh` measures it in the gateway's place; DATA_DIR is
//! ignored). Each request body is read whole, sent to URL with the path's leading `/v1`
//! replaced by URL's path, and the answer streamed back: the same HTTP stack, client pool and
//! runtime as the gateway, without parsing, identification, policy, inspection or audit. What
//! the gateway adds beyond this is Airlock's own cost; what this adds over the direct path is
//! the price of any extra hop on the machine.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

type Body = BoxBody<Bytes, hyper::Error>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18800".into());
    let _data_dir = args.next();
    let upstream = args.next().ok_or("NAME=URL")?;
    let base: Uri = upstream.split_once('=').ok_or("NAME=URL")?.1.parse()?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("passthrough on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (client, base) = (client.clone(), base.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req| forward(client.clone(), base.clone(), req));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn forward(
    client: Client<HttpConnector, Full<Bytes>>,
    base: Uri,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|c| c.to_bytes()) else {
        return Ok(status(400));
    };
    let path = parts
        .uri
        .path()
        .strip_prefix("/v1")
        .unwrap_or(parts.uri.path());
    let Ok(uri) = format!("{}{path}", base.to_string().trim_end_matches('/')).parse::<Uri>() else {
        return Ok(status(400));
    };
    let mut up = Request::new(Full::new(body));
    *up.method_mut() = parts.method;
    *up.uri_mut() = uri;
    *up.headers_mut() = parts.headers;
    up.headers_mut().remove(http::header::HOST);
    match client.request(up).await {
        Ok(resp) => Ok(resp.map(BodyExt::boxed)),
        Err(_) => Ok(status(502)),
    }
}

fn status(code: u16) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::BAD_GATEWAY);
    r
}
