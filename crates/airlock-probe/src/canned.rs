//! Valid canned answers for the model APIs, enough for an agent to finish one turn.
//!
//! Every answer says [`ANSWER`]. Formats: Anthropic Messages (JSON and SSE), OpenAI Chat
//! Completions (JSON and SSE), OpenAI Responses (JSON and SSE), Gemini `generateContent`
//! (JSON), `streamGenerateContent` (SSE with `alt=sse`, else a JSON array), token counting and
//! model lists. The API is chosen from the request path, streaming from the body's `stream`
//! flag (or Gemini's method name).

use serde_json::{Value, json};

/// What every canned answer says.
pub const ANSWER: &str = "hello";

/// The model APIs the recorder answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Api {
    AnthropicMessages,
    AnthropicCountTokens,
    OpenAiChat,
    OpenAiResponses,
    GeminiGenerate,
    GeminiStream,
    GeminiCountTokens,
    Models,
}

impl Api {
    /// Which API a request path (without query) addresses, if any.
    pub fn from_path(method: &str, path: &str) -> Option<Api> {
        let p = path.trim_end_matches('/');
        if method == "GET" {
            return (p.ends_with("/models") || p == "/models").then_some(Api::Models);
        }
        if method != "POST" {
            return None;
        }
        if p.ends_with("/messages/count_tokens") {
            Some(Api::AnthropicCountTokens)
        } else if p.ends_with("/messages") {
            Some(Api::AnthropicMessages)
        } else if p.ends_with("/chat/completions") {
            Some(Api::OpenAiChat)
        } else if p.ends_with("/responses") {
            Some(Api::OpenAiResponses)
        } else if p.ends_with(":streamGenerateContent") {
            Some(Api::GeminiStream)
        } else if p.ends_with(":generateContent") {
            Some(Api::GeminiGenerate)
        } else if p.ends_with(":countTokens") {
            Some(Api::GeminiCountTokens)
        } else {
            None
        }
    }
}

/// A canned response: status, content type, body and a short note for the record.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub note: &'static str,
}

const CREATED: i64 = 1_764_000_000;

fn json_body(note: &'static str, v: &Value) -> Canned {
    Canned {
        status: 200,
        content_type: "application/json",
        body: v.to_string(),
        note,
    }
}

fn sse(note: &'static str, events: &[(Option<&str>, Value)], done: bool) -> Canned {
    let mut body = String::new();
    for (name, data) in events {
        if let Some(n) = name {
            body.push_str("event: ");
            body.push_str(n);
            body.push('\n');
        }
        body.push_str("data: ");
        body.push_str(&data.to_string());
        body.push_str("\n\n");
    }
    if done {
        body.push_str("data: [DONE]\n\n");
    }
    Canned {
        status: 200,
        content_type: "text/event-stream",
        body,
        note,
    }
}

/// The canned answer for `api`, given the request body (parsed when it is JSON) and query.
pub fn answer(api: Api, path: &str, query: &str, body: Option<&Value>) -> Canned {
    let model = body
        .and_then(|b| b.get("model"))
        .and_then(Value::as_str)
        .filter(|m| m.len() <= 200)
        .unwrap_or("airlock-probe-model")
        .to_string();
    let stream = body
        .and_then(|b| b.get("stream"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    match api {
        Api::AnthropicMessages => anthropic(&model, stream),
        Api::AnthropicCountTokens => {
            json_body("anthropic-count-tokens", &json!({"input_tokens": 10}))
        }
        Api::OpenAiChat => chat(&model, stream),
        Api::OpenAiResponses => responses(&model, stream),
        Api::GeminiGenerate => json_body("gemini-json", &gemini_chunk(&gemini_model(path))),
        Api::GeminiStream => {
            let chunk = gemini_chunk(&gemini_model(path));
            if query.split('&').any(|kv| kv == "alt=sse") {
                sse("gemini-sse", &[(None, chunk)], false)
            } else {
                json_body("gemini-json-stream", &json!([chunk]))
            }
        }
        Api::GeminiCountTokens => json_body("gemini-count-tokens", &json!({"totalTokens": 10})),
        Api::Models => json_body(
            "models",
            &json!({
                "object": "list",
                "data": [{"id": model, "object": "model", "created": CREATED, "owned_by": "airlock", "type": "model", "display_name": model}],
                "models": [{"name": format!("models/{model}"), "displayName": model}],
                "has_more": false
            }),
        ),
    }
}

fn gemini_model(path: &str) -> String {
    path.rsplit('/')
        .next()
        .and_then(|last| last.split(':').next())
        .filter(|m| !m.is_empty() && m.len() <= 200)
        .unwrap_or("gemini-airlock-probe")
        .to_string()
}

fn anthropic(model: &str, stream: bool) -> Canned {
    let id = "msg_01AirlockProbeCanned";
    if !stream {
        return json_body(
            "anthropic-json",
            &json!({
                "id": id, "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": ANSWER}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": 10, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
            }),
        );
    }
    sse(
        "anthropic-sse",
        &[
            (
                Some("message_start"),
                json!({"type": "message_start", "message": {
                    "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
                    "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": 10, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}}),
            ),
            (
                Some("content_block_start"),
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            (Some("ping"), json!({"type": "ping"})),
            (
                Some("content_block_delta"),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": ANSWER}}),
            ),
            (
                Some("content_block_stop"),
                json!({"type": "content_block_stop", "index": 0}),
            ),
            (
                Some("message_delta"),
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 1}}),
            ),
            (Some("message_stop"), json!({"type": "message_stop"})),
        ],
        false,
    )
}

fn chat(model: &str, stream: bool) -> Canned {
    let id = "chatcmpl-airlockprobe";
    let usage = json!({"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11});
    if !stream {
        return json_body(
            "chat-json",
            &json!({
                "id": id, "object": "chat.completion", "created": CREATED, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop", "logprobs": null}],
                "usage": usage
            }),
        );
    }
    let chunk = |delta: Value, finish: Value| {
        (
            None,
            json!({"id": id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}]}),
        )
    };
    sse(
        "chat-sse",
        &[
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            chunk(json!({"content": ANSWER}), Value::Null),
            chunk(json!({}), json!("stop")),
            (
                None,
                json!({"id": id, "object": "chat.completion.chunk", "created": CREATED, "model": model, "choices": [], "usage": usage}),
            ),
        ],
        true,
    )
}

fn responses(model: &str, stream: bool) -> Canned {
    let rid = "resp_airlockprobe";
    let mid = "msg_airlockprobe";
    let part_done = json!({"type": "output_text", "text": ANSWER, "annotations": []});
    let item_done = json!({"id": mid, "type": "message", "status": "completed", "role": "assistant", "content": [part_done]});
    let usage = json!({"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 1,
                       "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 11});
    let response = |status: &str, output: Value, usage: Value| {
        json!({"id": rid, "object": "response", "created_at": CREATED, "status": status, "model": model,
               "output": output, "usage": usage, "error": null, "incomplete_details": null})
    };
    if !stream {
        return json_body(
            "responses-json",
            &response("completed", json!([item_done]), usage),
        );
    }
    let ev = |seq: u64, ty: &'static str, mut v: Value| {
        if let Value::Object(m) = &mut v {
            m.insert("type".into(), json!(ty));
            m.insert("sequence_number".into(), json!(seq));
        }
        (Some(ty), v)
    };
    sse(
        "responses-sse",
        &[
            ev(
                0,
                "response.created",
                json!({"response": response("in_progress", json!([]), Value::Null)}),
            ),
            ev(
                1,
                "response.in_progress",
                json!({"response": response("in_progress", json!([]), Value::Null)}),
            ),
            ev(
                2,
                "response.output_item.added",
                json!({"output_index": 0, "item": {"id": mid, "type": "message", "status": "in_progress", "role": "assistant", "content": []}}),
            ),
            ev(
                3,
                "response.content_part.added",
                json!({"item_id": mid, "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
            ),
            ev(
                4,
                "response.output_text.delta",
                json!({"item_id": mid, "output_index": 0, "content_index": 0, "delta": ANSWER}),
            ),
            ev(
                5,
                "response.output_text.done",
                json!({"item_id": mid, "output_index": 0, "content_index": 0, "text": ANSWER}),
            ),
            ev(
                6,
                "response.content_part.done",
                json!({"item_id": mid, "output_index": 0, "content_index": 0, "part": part_done}),
            ),
            ev(
                7,
                "response.output_item.done",
                json!({"output_index": 0, "item": item_done}),
            ),
            ev(
                8,
                "response.completed",
                json!({"response": response("completed", json!([item_done]), usage)}),
            ),
        ],
        false,
    )
}

fn gemini_chunk(model: &str) -> Value {
    json!({
        "candidates": [{"content": {"parts": [{"text": ANSWER}], "role": "model"}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 1, "totalTokenCount": 11},
        "modelVersion": model,
        "responseId": "airlock-probe"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sse_data(body: &str) -> Vec<Value> {
        body.split("\n\n")
            .filter_map(|ev| ev.lines().find_map(|l| l.strip_prefix("data: ")))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    #[test]
    fn routes_by_path() {
        assert_eq!(
            Api::from_path("POST", "/v1/messages"),
            Some(Api::AnthropicMessages)
        );
        assert_eq!(
            Api::from_path("POST", "/v1/messages/count_tokens"),
            Some(Api::AnthropicCountTokens)
        );
        assert_eq!(
            Api::from_path("POST", "/v1/chat/completions"),
            Some(Api::OpenAiChat)
        );
        assert_eq!(
            Api::from_path("POST", "/v1/responses"),
            Some(Api::OpenAiResponses)
        );
        assert_eq!(
            Api::from_path(
                "POST",
                "/v1beta/models/gemini-3.8-flash:streamGenerateContent"
            ),
            Some(Api::GeminiStream)
        );
        assert_eq!(
            Api::from_path("POST", "/v1beta/models/x:generateContent"),
            Some(Api::GeminiGenerate)
        );
        assert_eq!(Api::from_path("GET", "/v1/models"), Some(Api::Models));
        assert_eq!(Api::from_path("POST", "/v1/other"), None);
    }

    #[test]
    fn anthropic_stream_reassembles_to_the_answer() {
        let body = json!({"model": "claude-x", "stream": true});
        let c = answer(Api::AnthropicMessages, "/v1/messages", "", Some(&body));
        assert_eq!(c.content_type, "text/event-stream");
        let events = sse_data(&c.body);
        let text: String = events
            .iter()
            .filter(|e| e["type"] == "content_block_delta")
            .map(|e| e["delta"]["text"].as_str().unwrap())
            .collect();
        assert_eq!(text, ANSWER);
        assert_eq!(events.first().unwrap()["message"]["model"], "claude-x");
        assert_eq!(events.last().unwrap()["type"], "message_stop");
        // every `event:` name matches its data's type
        for ev in c.body.split("\n\n").filter(|e| !e.is_empty()) {
            let name = ev.lines().find_map(|l| l.strip_prefix("event: ")).unwrap();
            let data: Value =
                serde_json::from_str(ev.lines().find_map(|l| l.strip_prefix("data: ")).unwrap())
                    .unwrap();
            assert_eq!(data["type"], name);
        }
    }

    #[test]
    fn chat_stream_ends_with_done_and_carries_the_answer() {
        let body = json!({"model": "qwen", "stream": true});
        let c = answer(Api::OpenAiChat, "/v1/chat/completions", "", Some(&body));
        assert!(c.body.ends_with("data: [DONE]\n\n"));
        let text: String = sse_data(&c.body)
            .iter()
            .filter_map(|e| {
                e["choices"]
                    .get(0)
                    .and_then(|c| c["delta"]["content"].as_str())
                    .map(str::to_string)
            })
            .collect();
        assert_eq!(text, ANSWER);
        let j = answer(
            Api::OpenAiChat,
            "/v1/chat/completions",
            "",
            Some(&json!({"model": "m"})),
        );
        let v: Value = serde_json::from_str(&j.body).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], ANSWER);
    }

    #[test]
    fn responses_and_gemini_are_valid() {
        let c = answer(
            Api::OpenAiResponses,
            "/v1/responses",
            "",
            Some(&json!({"stream": true})),
        );
        let evs = sse_data(&c.body);
        assert_eq!(
            evs.last().unwrap()["response"]["output"][0]["content"][0]["text"],
            ANSWER
        );
        let seqs: Vec<u64> = evs
            .iter()
            .map(|e| e["sequence_number"].as_u64().unwrap())
            .collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
        let g = answer(
            Api::GeminiStream,
            "/v1beta/models/gem-1:streamGenerateContent",
            "alt=sse",
            None,
        );
        let evs = sse_data(&g.body);
        assert_eq!(
            evs[0]["candidates"][0]["content"]["parts"][0]["text"],
            ANSWER
        );
        assert_eq!(evs[0]["modelVersion"], "gem-1");
        let g = answer(
            Api::GeminiStream,
            "/v1beta/models/gem-1:streamGenerateContent",
            "",
            None,
        );
        let v: Value = serde_json::from_str(&g.body).unwrap();
        assert!(v.is_array());
    }
}
