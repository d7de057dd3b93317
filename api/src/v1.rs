//! OpenAI-compatible HTTP: `POST /v1/completions`, `POST /v1/chat/completions` (both with
//! `"stream": true` as server-sent events) and `GET /v1/models`. `model` is an adapter id or
//! `line@version`. Besides OpenAI's fields every answer carries:
//!
//! - `ancestry`: adapter -> parents (with merge weights) -> base model; snapshot -> Datanets;
//! - `attribution`: the top contributions by gradient influence (contributor, Datanet,
//!   score, share), contributor shares and the answer's spans found in the training data;
//!   `"attribution": false` in the request leaves it out of the response (the answer's credit
//!   is measured and recorded either way: payment never depends on it);
//! - `inference`: its id, request and response hashes and fee, as the ledger records them.
//!
//! A streamed answer sends these on its last chunk, before `data: [DONE]`.
//!
//! The routes speak HTTP only: generating, attributing and recording answers is a [`Models`]
//! implementation's (the binary wires `tributary-models`' server to it), so this crate does
//! not link libtorch. Every failure becomes a response in one place, [`Failure::response`].

use std::convert::Infallible;
use std::sync::Arc;

use alloy::primitives::keccak256;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as Sse, KeepAlive};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Sampling settings of one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// 0 is greedy; above 0 samples from the softened distribution.
    pub temperature: f64,
    /// Nucleus sampling: the most likely tokens whose probabilities sum to `top_p`.
    pub top_p: f64,
    /// The request's own seed: the same seed gives the same answer.
    pub seed: u64,
}

/// A published model as `/v1/models` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelCard {
    /// `line@version`.
    pub name: String,
    /// The adapter id (`0x…`).
    pub adapter_id: String,
    /// The block that published it.
    pub block: u64,
}

/// What a model server reports while it generates one answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Generated {
    /// One more token: the answer so far, decoded (it may end in U+FFFD while a character
    /// is incomplete).
    Text(String),
    /// Generation ended: at an end-of-text token (`stop`) or at the length limit.
    Done {
        /// Whether the model stopped by itself.
        stop: bool,
    },
    /// The request cannot be answered as given (the message says why).
    Refused(String),
    /// Generation failed on the server's side.
    Failed(String),
}

/// A generation under way. Dropping `events` cancels it.
#[derive(Debug)]
pub struct Generation {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// What the server reports, in order, ending with `Done`, `Refused` or `Failed`.
    pub events: mpsc::UnboundedReceiver<Generated>,
}

/// A finished answer, to attribute and record.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    /// The request body as received.
    pub request: &'a Value,
    /// The prompt the model saw.
    pub prompt: &'a str,
    /// The answer's text.
    pub text: &'a str,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// Whether the response lists the attribution (`"attribution": false` leaves it out; the
    /// credit is measured and recorded either way).
    pub attribution: bool,
}

/// Why a request failed, by whose fault.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The caller's mistake (400, with the message).
    Invalid(String),
    /// The model named is not published (404, with the message).
    NotFound(String),
    /// The chain or the lake failed (502; the message goes to the log only).
    Upstream(String),
    /// Anything else (500; the message goes to the log only).
    Internal(String),
}

/// What the `/v1` routes need of a model server.
#[async_trait::async_trait]
pub trait Models: Send + Sync + 'static {
    /// Every published model (re-read, so new ones show at once).
    async fn list(&self) -> Result<Vec<ModelCard>, Failure>;
    /// The model `name` (an id or `line@version`) made ready to answer: its `line@version`.
    async fn resolve(&self, name: &str) -> Result<String, Failure>;
    /// Starts generating up to `max_tokens` after `prompt`.
    async fn generate(
        &self,
        name: &str,
        prompt: &str,
        max_tokens: usize,
        sampling: Sampling,
    ) -> Result<Generation, Failure>;
    /// Attributes and records a finished answer: the response's extra fields (`ancestry`,
    /// `attribution`, `inference`).
    async fn account(&self, name: &str, answer: Answer<'_>) -> Result<Value, Failure>;
    /// A generation finished after `seconds` with `tokens` generated (for metrics).
    fn finished(&self, seconds: f64, tokens: usize);
}

type Backend = Arc<dyn Models>;

/// The routes, over a model server. The answering routes record every answer in the
/// inference ledger (on chain, with a fee): they need `Authorization: Bearer <token>`, and a
/// request without it is refused before any work. `/v1/models` is public.
pub fn router(models: Backend, token: ApiToken) -> axum::Router {
    let answering = axum::Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat))
        .route_layer(axum::middleware::from_fn_with_state(token, require_token));
    axum::Router::new()
        .route("/v1/models", get(list))
        .merge(answering)
        .with_state(models)
}

/// The bearer token the answering routes require.
#[derive(Clone)]
pub struct ApiToken(Arc<str>);

impl ApiToken {
    /// A token; it must not be empty.
    pub fn new(token: &str) -> Result<Self, String> {
        let token = token.trim();
        if token.is_empty() {
            return Err("the API token is empty: set TRIBUTARY_API_TOKEN to a secret".into());
        }
        Ok(Self(token.into()))
    }

    /// The `Authorization` header value that carries this token.
    pub fn header(&self) -> String {
        format!("Bearer {}", self.0)
    }

    /// Names this token in records without revealing it: `token:` and the first 8 hex digits
    /// of its keccak-256.
    pub fn fingerprint(&self) -> String {
        let h = alloy::primitives::keccak256(self.0.as_bytes());
        format!("token:{}", &alloy::hex::encode(h)[..8])
    }

    /// `header` is `Bearer <this token>` (compared in constant time).
    pub(crate) fn admits(&self, header: Option<&axum::http::HeaderValue>) -> bool {
        let Some(given) = header
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
        else {
            return false;
        };
        let (a, b) = (given.trim().as_bytes(), self.0.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(..)")
    }
}

async fn require_token(
    State(token): State<ApiToken>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if token.admits(request.headers().get(axum::http::header::AUTHORIZATION)) {
        return next.run(request).await;
    }
    let mut response = (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": {
            "message": "answers are recorded on chain and need the server's API token: send `Authorization: Bearer <token>` (the token is TRIBUTARY_API_TOKEN, or the api-token file in the server's data directory)",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        }})),
    )
        .into_response();
    response.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer"),
    );
    response
}

/// How chat messages become one prompt: `system` is put first when given; each user turn
/// is `user` with `{content}` replaced, each earlier assistant turn `assistant`; the prompt
/// ends with `reply` (the model writes the rest). The default matches the demo Datanet's
/// question/answer template.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatTemplate {
    /// A system message.
    pub system: String,
    /// A user turn.
    pub user: String,
    /// An earlier assistant turn.
    pub assistant: String,
    /// What the prompt ends with.
    pub reply: String,
}

impl Default for ChatTemplate {
    fn default() -> Self {
        ChatTemplate {
            system: "{content}\n".into(),
            user: "question: {content}\n".into(),
            assistant: "answer: {content}\n".into(),
            reply: "answer:".into(),
        }
    }
}

/// The prompt for `messages` (`[{role, content}]`, content a string or text parts).
pub fn chat_prompt(t: &ChatTemplate, messages: &[Value]) -> Result<String, String> {
    if messages.is_empty() {
        return Err(
            "messages is empty: send at least one {\"role\": \"user\", \"content\": ...}".into(),
        );
    }
    let mut out = String::new();
    for (i, m) in messages.iter().enumerate() {
        let content = match &m["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join(""),
            _ => {
                return Err(format!(
                    "messages[{i}].content must be a string or text parts"
                ));
            }
        };
        let form = match m["role"].as_str() {
            Some("system" | "developer") => &t.system,
            Some("user") => &t.user,
            Some("assistant") => &t.assistant,
            other => {
                return Err(format!(
                    "messages[{i}].role {other:?} is not system, user or assistant"
                ));
            }
        };
        out.push_str(&form.replace("{content}", &content));
    }
    out.push_str(&t.reply);
    Ok(out)
}

impl Failure {
    /// The one mapping from a failure to a response. The caller's mistakes (a bad request, a
    /// model that is not published) come back with their message; the chain or the lake
    /// failing is a 502 and anything else a 500, whose bodies say what failed and where to
    /// look, never the internal message (that goes to the log, inside the request's span).
    pub fn response(&self, param: Option<&str>) -> Response {
        match self {
            Failure::Invalid(m) => error(StatusCode::BAD_REQUEST, m.clone(), param),
            Failure::NotFound(m) => error(StatusCode::NOT_FOUND, m.clone(), param),
            Failure::Upstream(m) => {
                tracing::error!(error = %m, "the chain or the lake failed");
                error(
                    StatusCode::BAD_GATEWAY,
                    "the chain or the lake did not answer; try again (details in the server's log)",
                    None,
                )
            }
            Failure::Internal(m) => {
                tracing::error!(error = %m, "request failed");
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error (details in the server's log)",
                    None,
                )
            }
        }
    }
}

fn error(status: StatusCode, message: impl Into<String>, param: Option<&str>) -> Response {
    let code = match status {
        StatusCode::NOT_FOUND => "model_not_found",
        StatusCode::BAD_REQUEST => "invalid_request",
        _ => "server_error",
    };
    let kind = if status.is_client_error() {
        "invalid_request_error"
    } else {
        "server_error"
    };
    (
        status,
        Json(json!({"error": {"message": message.into(), "type": kind, "param": param, "code": code}})),
    )
        .into_response()
}

async fn list(State(models): State<Backend>) -> Response {
    match models.list().await {
        Ok(all) => Json(json!({
            "object": "list",
            "data": all.iter().map(|m| json!({
                "id": m.name,
                "object": "model",
                "created": 0,
                "owned_by": "tributary",
                "adapter_id": m.adapter_id,
                "block": m.block,
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => e.response(None),
    }
}

/// The fields both endpoints share (others are accepted and ignored, as OpenAI's own
/// server ignores what it does not use).
#[derive(Debug, Deserialize)]
struct Common {
    model: String,
    #[serde(default)]
    max_tokens: Option<usize>,
    #[serde(default)]
    max_completion_tokens: Option<usize>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    stop: Option<Value>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    n: Option<u32>,
    /// Tributary: `false` leaves the attribution out of the response (it is still measured
    /// and recorded).
    #[serde(default)]
    attribution: Option<bool>,
}

struct Params {
    max_tokens: usize,
    sampling: Sampling,
    stop: Vec<String>,
    stream: bool,
    attribution: bool,
}

// The error is the ready response; it is built once per bad request.
#[allow(clippy::result_large_err)]
fn params(c: &Common) -> Result<Params, Response> {
    let bad = |m: String, p: &str| Err(error(StatusCode::BAD_REQUEST, m, Some(p)));
    if c.n.unwrap_or(1) != 1 {
        return bad("n must be 1: send one request per answer".into(), "n");
    }
    let temperature = c.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return bad(
            format!("temperature {temperature} must be between 0 and 2"),
            "temperature",
        );
    }
    let top_p = c.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return bad(format!("top_p {top_p} must be in (0, 1]"), "top_p");
    }
    let stop = match &c.stop {
        None | Some(Value::Null) => vec![],
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if a.iter().all(Value::is_string) && a.len() <= 4 => a
            .iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .filter(|s| !s.is_empty())
            .collect(),
        Some(_) => return bad("stop must be a string or up to 4 strings".into(), "stop"),
    };
    Ok(Params {
        max_tokens: c.max_completion_tokens.or(c.max_tokens).unwrap_or(16),
        sampling: Sampling {
            temperature,
            top_p,
            seed: c.seed.unwrap_or_else(rand_seed),
        },
        stop,
        stream: c.stream.unwrap_or(false),
        attribution: c.attribution.unwrap_or(true),
    })
}

fn rand_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    t.as_nanos() as u64 ^ (std::process::id() as u64).rotate_left(32)
}

/// A finished generation.
struct Outcome {
    text: String,
    finish: &'static str,
    prompt_tokens: usize,
    completion_tokens: usize,
}

/// Runs one generation, calling `delta` with each piece of text as it becomes final (text
/// that could still turn into a stop string is held back).
async fn generate(
    models: &Backend,
    name: &str,
    prompt: &str,
    p: &Params,
    mut delta: impl FnMut(&str) -> bool,
) -> Result<Outcome, Response> {
    let started = std::time::Instant::now();
    let Generation {
        prompt_tokens,
        mut events,
    } = models
        .generate(name, prompt, p.max_tokens, p.sampling)
        .await
        .map_err(|e| e.response(None))?;
    let hold = p
        .stop
        .iter()
        .map(|s| s.len())
        .max()
        .unwrap_or(1)
        .saturating_sub(1);
    let mut tokens = 0;
    let mut sent = 0;
    let mut finish = "length";
    let mut text = String::new();
    while let Some(ev) = events.recv().await {
        match ev {
            Generated::Text(so_far) => {
                tokens += 1;
                text = so_far;
                if let Some(cut) = p.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
                    text.truncate(cut);
                    finish = "stop";
                    break; // dropping the receiver cancels the sequence
                }
                // A partial UTF-8 character decodes to U+FFFD: wait for the rest.
                if text.ends_with('\u{FFFD}') {
                    continue;
                }
                let mut upto = text.len().saturating_sub(hold);
                while !text.is_char_boundary(upto) {
                    upto -= 1;
                }
                if upto > sent {
                    if !delta(&text[sent..upto]) {
                        return Err(error(StatusCode::BAD_REQUEST, "client went away", None));
                    }
                    sent = upto;
                }
            }
            Generated::Done { stop } => {
                if stop {
                    finish = "stop";
                }
            }
            Generated::Refused(m) => return Err(Failure::Invalid(m).response(None)),
            Generated::Failed(m) => return Err(Failure::Internal(m).response(None)),
        }
    }
    if text.len() > sent {
        delta(&text[sent..]);
    }
    models.finished(started.elapsed().as_secs_f64(), tokens);
    Ok(Outcome {
        text,
        finish,
        prompt_tokens,
        completion_tokens: tokens,
    })
}

/// The answer's extra fields, from the model server.
async fn account(
    models: &Backend,
    name: &str,
    request: &Value,
    prompt: &str,
    out: &Outcome,
    attribution: bool,
) -> Result<Value, Response> {
    models
        .account(
            name,
            Answer {
                request,
                prompt,
                text: &out.text,
                prompt_tokens: out.prompt_tokens,
                completion_tokens: out.completion_tokens,
                attribution,
            },
        )
        .await
        .map_err(|e| e.response(None))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Chat,
}

async fn completions(State(models): State<Backend>, Json(body): Json<Value>) -> Response {
    let prompt = match &body["prompt"] {
        Value::String(s) => s.clone(),
        Value::Array(a) if a.len() == 1 && a[0].is_string() => {
            a[0].as_str().unwrap_or_default().to_string()
        }
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "prompt must be a string (one prompt per request)",
                Some("prompt"),
            );
        }
    };
    answer(models, body, prompt, Kind::Text).await
}

async fn chat(State(models): State<Backend>, Json(body): Json<Value>) -> Response {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    match chat_prompt(&ChatTemplate::default(), &messages) {
        Ok(prompt) => answer(models, body, prompt, Kind::Chat).await,
        Err(m) => error(StatusCode::BAD_REQUEST, m, Some("messages")),
    }
}

async fn answer(models: Backend, body: Value, prompt: String, kind: Kind) -> Response {
    let common: Common = match serde_json::from_value(body.clone()) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string(), None),
    };
    let p = match params(&common) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let model = match models.resolve(&common.model).await {
        Ok(m) => m,
        Err(e) => return e.response(Some("model")),
    };
    let id = format!(
        "{}-{}",
        match kind {
            Kind::Text => "cmpl",
            Kind::Chat => "chatcmpl",
        },
        &keccak256(serde_json::to_vec(&body).unwrap_or_default()).to_string()[2..26]
    );
    let created = now();
    let name = model.clone();
    let head = move |choices: Value, chunk: bool| {
        json!({
            "id": id,
            "object": match (kind, chunk) {
                (Kind::Text, _) => "text_completion",
                (Kind::Chat, true) => "chat.completion.chunk",
                (Kind::Chat, false) => "chat.completion",
            },
            "created": created,
            "model": name,
            "choices": choices,
        })
    };
    if !p.stream {
        let out = match generate(&models, &model, &prompt, &p, |_| true).await {
            Ok(o) => o,
            Err(r) => return r,
        };
        let extra = match account(&models, &model, &body, &prompt, &out, p.attribution).await {
            Ok(v) => v,
            Err(r) => return r,
        };
        let choice = match kind {
            Kind::Text => {
                json!({"index": 0, "text": out.text, "logprobs": null, "finish_reason": out.finish})
            }
            Kind::Chat => {
                json!({"index": 0, "message": {"role": "assistant", "content": out.text}, "logprobs": null, "finish_reason": out.finish})
            }
        };
        let mut v = merge(head(json!([choice]), false), extra);
        v["usage"] = usage(&out);
        return Json(v).into_response();
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Result<Sse, Infallible>>();
    tokio::spawn(async move {
        let chunk = |delta: &str, finish: Option<&str>| -> Value {
            match kind {
                Kind::Text => {
                    json!([{"index": 0, "text": delta, "logprobs": null, "finish_reason": finish}])
                }
                Kind::Chat => {
                    json!([{"index": 0, "delta": {"role": "assistant", "content": delta}, "logprobs": null, "finish_reason": finish}])
                }
            }
        };
        let send = |v: Value| tx.send(Ok(Sse::default().data(v.to_string()))).is_ok();
        let out = generate(&models, &model, &prompt, &p, |d| {
            send(head(chunk(d, None), true))
        })
        .await;
        let out = match out {
            Ok(o) => o,
            Err(_) => {
                send(json!({"error": {"message": "generation failed", "type": "server_error"}}));
                return;
            }
        };
        match account(&models, &model, &body, &prompt, &out, p.attribution).await {
            Ok(extra) => {
                let mut last = merge(head(chunk("", Some(out.finish)), true), extra);
                last["usage"] = usage(&out);
                send(last);
            }
            Err(_) => {
                send(
                    json!({"error": {"message": "recording the answer failed", "type": "server_error"}}),
                );
            }
        }
        let _ = tx.send(Ok(Sse::default().data("[DONE]")));
    });
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    axum::response::Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn usage(out: &Outcome) -> Value {
    json!({
        "prompt_tokens": out.prompt_tokens,
        "completion_tokens": out.completion_tokens,
        "total_tokens": out.prompt_tokens + out.completion_tokens,
    })
}
