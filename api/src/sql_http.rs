//! `POST /sql`: analysts' SQL over HTTP, answered as JSON, CSV or Arrow IPC.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;

use crate::analyst::{Analyst, Answer, SqlError};

/// Output formats of `POST /sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `{"columns": [{"name", "type"}], "rows": [{…}], "row_count", "truncated"}`.
    Json,
    /// RFC 4180 CSV with a header row.
    Csv,
    /// The Arrow IPC stream format.
    Arrow,
}

impl Format {
    /// From `?format=` or else the `Accept` header; JSON by default.
    fn choose(asked: Option<Format>, headers: &HeaderMap) -> Self {
        if let Some(f) = asked {
            return f;
        }
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if accept.contains("text/csv") {
            Format::Csv
        } else if accept.contains("application/vnd.apache.arrow.stream") {
            Format::Arrow
        } else {
            Format::Json
        }
    }
}

#[derive(Debug, Deserialize)]
struct Params {
    format: Option<Format>,
}

#[derive(Debug, Deserialize)]
struct Body {
    sql: String,
}

/// `POST /sql` with the statement as the body (plain text, or JSON `{"sql": "…"}`);
/// `?format=json|csv|arrow` or an `Accept` header picks the answer's format. A cut answer
/// carries `X-Tributary-Truncated: true`.
pub fn router(analyst: Analyst) -> Router {
    Router::new().route("/sql", post(run)).with_state(analyst)
}

async fn run(
    State(analyst): State<Analyst>,
    Query(params): Query<Params>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let sql = match serde_json::from_str::<Body>(&body) {
        Ok(b) => b.sql,
        Err(_) => body,
    };
    if sql.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "empty",
            "send the SQL statement as the request body".into(),
        );
    }
    let format = Format::choose(params.format, &headers);
    match analyst.query(&sql).await {
        Ok(answer) => match encode(&answer, format) {
            Ok(r) => r,
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "encoding", e.to_string()),
        },
        Err(e) => {
            let (status, code) = match &e {
                SqlError::ReadOnly(_) => (StatusCode::FORBIDDEN, "read_only"),
                SqlError::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "timeout"),
                SqlError::Memory { .. } => (StatusCode::INSUFFICIENT_STORAGE, "memory"),
                SqlError::Query(_) => (StatusCode::BAD_REQUEST, "query"),
            };
            error(status, code, e.to_string())
        }
    }
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        axum::Json(serde_json::json!({"error": message, "code": code})),
    )
        .into_response()
}

fn encode(answer: &Answer, format: Format) -> Result<Response, arrow::error::ArrowError> {
    let batches: Vec<&arrow::array::RecordBatch> = answer.batches.iter().collect();
    let (content_type, body) = match format {
        Format::Json => {
            // Arrow's writer already produces the rows' JSON: splice it in as it is rather
            // than parse it back into values and print them again.
            let mut rows = arrow::json::ArrayWriter::new(Vec::new());
            rows.write_batches(&batches)?;
            rows.finish()?;
            let rows = rows.into_inner();
            let columns: Vec<serde_json::Value> = answer
                .schema
                .fields()
                .iter()
                .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string()}))
                .collect();
            let mut body = format!(
                r#"{{"columns":{},"row_count":{},"truncated":{},"rows":"#,
                serde_json::Value::Array(columns),
                answer.rows(),
                answer.truncated
            )
            .into_bytes();
            // An answer without batches writes nothing, not `[]`.
            body.extend_from_slice(if rows.is_empty() { b"[]" } else { &rows });
            body.push(b'}');
            ("application/json", body)
        }
        Format::Csv => {
            let mut out = Vec::new();
            {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                for b in &batches {
                    w.write(b)?;
                }
            }
            ("text/csv; charset=utf-8", out)
        }
        Format::Arrow => {
            let mut out = Vec::new();
            {
                let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut out, &answer.schema)?;
                for b in &batches {
                    w.write(b)?;
                }
                w.finish()?;
            }
            ("application/vnd.apache.arrow.stream", out)
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::HeaderName::from_static("x-tributary-truncated"),
                answer.truncated.to_string(),
            ),
        ],
        body,
    )
        .into_response())
}
