//! Which model API a request speaks, where it goes upstream, and each API's own error shape.
//!
//! Errors the gateway makes itself are written in the caller's API format so that the agent
//! shows the message to the person (Claude Code prints `error.message`, Codex and the OpenAI
//! SDKs print `error.message`, Gemini CLI prints `error.message` + `error.status`).

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::json;

/// An API operation the gateway serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /v1/messages`
    AnthropicMessages,
    /// `POST /v1/messages/count_tokens`
    AnthropicCountTokens,
    /// `POST /v1/chat/completions` (also `/chat/completions`)
    OpenAiChat,
    /// `POST /v1/responses` (also `/responses`)
    OpenAiResponses,
    /// `GET /v1/models` (also `/models`), answered from the config.
    Models,
    /// `POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent`: identified,
    /// then answered with 404 in Google's shape (no Gemini upstream API yet).
    Gemini,
}

/// The family of error shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Anthropic,
    OpenAi,
    Google,
}

/// Why a path/method could not be routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    NotFound,
    MethodNotAllowed(&'static str),
}

impl Endpoint {
    /// Routes a request by method and path (the query string is not part of `path`).
    pub fn route(method: &Method, path: &str) -> Result<Endpoint, RouteError> {
        let ep = match path {
            "/v1/messages" => Endpoint::AnthropicMessages,
            "/v1/messages/count_tokens" => Endpoint::AnthropicCountTokens,
            "/v1/chat/completions" | "/chat/completions" => Endpoint::OpenAiChat,
            "/v1/responses" | "/responses" => Endpoint::OpenAiResponses,
            "/v1/models" | "/models" => Endpoint::Models,
            p if p.starts_with("/v1beta/models/")
                || p.starts_with("/v1/models/") && p.contains(':') =>
            {
                Endpoint::Gemini
            }
            _ => return Err(RouteError::NotFound),
        };
        let expected = if ep == Endpoint::Models {
            Method::GET
        } else {
            Method::POST
        };
        if *method != expected {
            return Err(RouteError::MethodNotAllowed(if ep == Endpoint::Models {
                "GET"
            } else {
                "POST"
            }));
        }
        Ok(ep)
    }

    /// The error-shape family of this endpoint.
    pub fn family(self) -> Family {
        match self {
            Endpoint::AnthropicMessages | Endpoint::AnthropicCountTokens => Family::Anthropic,
            Endpoint::OpenAiChat | Endpoint::OpenAiResponses | Endpoint::Models => Family::OpenAi,
            Endpoint::Gemini => Family::Google,
        }
    }

    /// A short stable name used in logs and metric labels.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::AnthropicMessages => "anthropic_messages",
            Endpoint::AnthropicCountTokens => "anthropic_count_tokens",
            Endpoint::OpenAiChat => "openai_chat",
            Endpoint::OpenAiResponses => "openai_responses",
            Endpoint::Models => "models",
            Endpoint::Gemini => "gemini",
        }
    }

    /// The path to append to an upstream's base URL. Anthropic bases are documented without
    /// `/v1` (`https://api.anthropic.com`), OpenAI bases with it (`https://api.openai.com/v1`).
    pub fn upstream_path(self) -> &'static str {
        match self {
            Endpoint::AnthropicMessages => "/v1/messages",
            Endpoint::AnthropicCountTokens => "/v1/messages/count_tokens",
            Endpoint::OpenAiChat => "/chat/completions",
            Endpoint::OpenAiResponses => "/responses",
            Endpoint::Models => "/models",
            Endpoint::Gemini => "",
        }
    }
}

/// Guesses the error family for a path that could not be routed, so that even a 404 is in a
/// shape the caller understands.
pub fn family_for_path(path: &str) -> Family {
    if path.starts_with("/v1/messages") || path.starts_with("/v1/complete") {
        Family::Anthropic
    } else if path.starts_with("/v1beta") {
        Family::Google
    } else {
        Family::OpenAi
    }
}

/// Who caused an error: the caller, the upstream, or Airlock itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Client,
    Upstream,
    Airlock,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Client => "client",
            Cause::Upstream => "upstream",
            Cause::Airlock => "airlock",
        }
    }
}

/// The kinds of error the gateway itself answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: malformed JSON, missing fields.
    InvalidRequest,
    /// 401: missing or unknown Airlock key.
    Authentication,
    /// 403: denied by policy.
    PolicyDenied,
    /// 404: unknown path, or a model no upstream serves.
    NotFound,
    /// 405
    MethodNotAllowed,
    /// 408: the client was too slow sending its body.
    RequestTimeout,
    /// 413
    RequestTooLarge,
    /// 415
    UnsupportedMediaType,
    /// 502: upstream down or answered garbage.
    UpstreamUnavailable,
    /// 504: upstream too slow.
    UpstreamTimeout,
    /// 500: Airlock's own fault or misconfiguration.
    Internal,
    /// 503: Airlock cannot take the request now.
    Unavailable,
}

impl ErrorKind {
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Authentication => StatusCode::UNAUTHORIZED,
            ErrorKind::PolicyDenied => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            ErrorKind::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn cause(self) -> Cause {
        match self {
            ErrorKind::UpstreamUnavailable | ErrorKind::UpstreamTimeout => Cause::Upstream,
            ErrorKind::Internal | ErrorKind::Unavailable => Cause::Airlock,
            _ => Cause::Client,
        }
    }

    /// Anthropic's `error.type`.
    fn anthropic_type(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest
            | ErrorKind::MethodNotAllowed
            | ErrorKind::RequestTimeout
            | ErrorKind::UnsupportedMediaType => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::PolicyDenied => "permission_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::RequestTooLarge => "request_too_large",
            ErrorKind::UpstreamTimeout => "timeout_error",
            ErrorKind::Unavailable => "overloaded_error",
            ErrorKind::UpstreamUnavailable | ErrorKind::Internal => "api_error",
        }
    }

    /// OpenAI's `error.type` and `error.code`.
    fn openai_type_code(self) -> (&'static str, &'static str) {
        match self {
            ErrorKind::InvalidRequest => ("invalid_request_error", "invalid_request"),
            ErrorKind::Authentication => ("invalid_request_error", "invalid_api_key"),
            ErrorKind::PolicyDenied => ("permission_error", "policy_denied"),
            ErrorKind::NotFound => ("invalid_request_error", "not_found"),
            ErrorKind::MethodNotAllowed => ("invalid_request_error", "method_not_allowed"),
            ErrorKind::RequestTimeout => ("invalid_request_error", "request_timeout"),
            ErrorKind::RequestTooLarge => ("invalid_request_error", "request_too_large"),
            ErrorKind::UnsupportedMediaType => ("invalid_request_error", "unsupported_media_type"),
            ErrorKind::UpstreamUnavailable => ("server_error", "upstream_unavailable"),
            ErrorKind::UpstreamTimeout => ("server_error", "upstream_timeout"),
            ErrorKind::Internal => ("server_error", "internal_error"),
            ErrorKind::Unavailable => ("server_error", "unavailable"),
        }
    }

    /// Google's `error.status`.
    fn google_status(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest
            | ErrorKind::MethodNotAllowed
            | ErrorKind::RequestTooLarge
            | ErrorKind::UnsupportedMediaType => "INVALID_ARGUMENT",
            ErrorKind::Authentication => "UNAUTHENTICATED",
            ErrorKind::PolicyDenied => "PERMISSION_DENIED",
            ErrorKind::NotFound => "NOT_FOUND",
            ErrorKind::RequestTimeout | ErrorKind::UpstreamTimeout => "DEADLINE_EXCEEDED",
            ErrorKind::UpstreamUnavailable | ErrorKind::Unavailable => "UNAVAILABLE",
            ErrorKind::Internal => "INTERNAL",
        }
    }
}

/// Renders an error body in `family`'s shape.
pub fn error_body(family: Family, kind: ErrorKind, message: &str) -> Bytes {
    let v = match family {
        Family::Anthropic => json!({
            "type": "error",
            "error": { "type": kind.anthropic_type(), "message": message },
        }),
        Family::OpenAi => {
            let (ty, code) = kind.openai_type_code();
            json!({ "error": { "message": message, "type": ty, "param": null, "code": code } })
        }
        Family::Google => json!({
            "error": { "code": kind.status().as_u16(), "message": message, "status": kind.google_status() },
        }),
    };
    Bytes::from(v.to_string())
}

/// An error as a server-sent event of `endpoint`'s streaming format, for a stream that fails
/// after its head was sent: Anthropic `event: error`, OpenAI Chat a `data:` chunk holding
/// `error` (what the OpenAI SDKs raise from), Responses `event: error`. `None` for the others.
pub fn sse_error_event(endpoint: &str, kind: ErrorKind, message: &str) -> Option<Bytes> {
    let (event, v) = match endpoint {
        "anthropic_messages" => (
            Some("error"),
            json!({ "type": "error", "error": { "type": kind.anthropic_type(), "message": message } }),
        ),
        "openai_chat" => {
            let (ty, code) = kind.openai_type_code();
            (
                None,
                json!({ "error": { "message": message, "type": ty, "param": null, "code": code } }),
            )
        }
        "openai_responses" => {
            let (_, code) = kind.openai_type_code();
            (
                Some("error"),
                json!({ "type": "error", "code": code, "message": message, "param": null }),
            )
        }
        _ => return None,
    };
    let mut out = String::new();
    if let Some(e) = event {
        out.push_str("event: ");
        out.push_str(e);
        out.push('\n');
    }
    out.push_str("data: ");
    out.push_str(&v.to_string());
    out.push_str("\n\n");
    Some(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_error_events_per_api() {
        let a = sse_error_event("anthropic_messages", ErrorKind::UpstreamTimeout, "quiet").unwrap();
        let a = std::str::from_utf8(&a).unwrap();
        assert!(
            a.starts_with("event: error\ndata: {") && a.ends_with("}\n\n"),
            "{a}"
        );
        let v: serde_json::Value = serde_json::from_str(&a[19..a.len() - 2]).unwrap();
        assert_eq!(v["error"]["type"], "timeout_error");
        let c = sse_error_event("openai_chat", ErrorKind::UpstreamUnavailable, "gone").unwrap();
        let c = std::str::from_utf8(&c).unwrap();
        assert!(c.starts_with("data: {\"error\":"), "{c}");
        let r = sse_error_event("openai_responses", ErrorKind::UpstreamTimeout, "q").unwrap();
        assert!(
            std::str::from_utf8(&r)
                .unwrap()
                .starts_with("event: error\ndata: {\"code\"")
        );
        assert!(sse_error_event("gemini", ErrorKind::UpstreamTimeout, "q").is_none());
    }

    #[test]
    fn routes_every_api() {
        let post = Method::POST;
        assert_eq!(
            Endpoint::route(&post, "/v1/messages"),
            Ok(Endpoint::AnthropicMessages)
        );
        assert_eq!(
            Endpoint::route(&post, "/v1/messages/count_tokens"),
            Ok(Endpoint::AnthropicCountTokens)
        );
        assert_eq!(
            Endpoint::route(&post, "/v1/chat/completions"),
            Ok(Endpoint::OpenAiChat)
        );
        assert_eq!(
            Endpoint::route(&post, "/chat/completions"),
            Ok(Endpoint::OpenAiChat)
        );
        assert_eq!(
            Endpoint::route(&post, "/v1/responses"),
            Ok(Endpoint::OpenAiResponses)
        );
        assert_eq!(
            Endpoint::route(&Method::GET, "/v1/models"),
            Ok(Endpoint::Models)
        );
        assert_eq!(
            Endpoint::route(
                &post,
                "/v1beta/models/gemini-3.8-flash:streamGenerateContent"
            ),
            Ok(Endpoint::Gemini)
        );
        assert_eq!(
            Endpoint::route(&post, "/v1/nope"),
            Err(RouteError::NotFound)
        );
        assert_eq!(
            Endpoint::route(&Method::GET, "/v1/messages"),
            Err(RouteError::MethodNotAllowed("POST"))
        );
    }

    #[test]
    fn error_shapes() {
        let a: serde_json::Value = serde_json::from_slice(&error_body(
            Family::Anthropic,
            ErrorKind::PolicyDenied,
            "no",
        ))
        .unwrap();
        assert_eq!(a["type"], "error");
        assert_eq!(a["error"]["type"], "permission_error");
        assert_eq!(a["error"]["message"], "no");
        let o: serde_json::Value = serde_json::from_slice(&error_body(
            Family::OpenAi,
            ErrorKind::RequestTooLarge,
            "big",
        ))
        .unwrap();
        assert_eq!(o["error"]["type"], "invalid_request_error");
        assert_eq!(o["error"]["code"], "request_too_large");
        assert!(o["error"]["param"].is_null());
        let g: serde_json::Value =
            serde_json::from_slice(&error_body(Family::Google, ErrorKind::NotFound, "x")).unwrap();
        assert_eq!(g["error"]["code"], 404);
        assert_eq!(g["error"]["status"], "NOT_FOUND");
    }
}
