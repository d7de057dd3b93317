//! SQL over the PostgreSQL wire protocol (datafusion-postgres on pgwire), so `psql`, DBeaver,
//! Grafana and Metabase connect to the lake as to a read-only PostgreSQL database.
//!
//! - Reads (`SELECT`, `WITH`, `EXPLAIN`, `SHOW TABLES`) sent as simple queries (psql, most
//!   tools' text mode) run through the [`Analyst`]: read-only, memory pool, per-query timeout,
//!   and streamed, with no row cap.
//! - Session statements (`SET`, `SHOW x`, `BEGIN`/`COMMIT`/`ROLLBACK`, cursors) are answered by
//!   datafusion-postgres's hooks, as tools expect of a PostgreSQL server.
//! - Everything else (DDL, DML, `COPY`, grants…) is refused with SQLSTATE `25006`
//!   (read_only_sql_transaction), over both the simple and the extended protocol.
//! - Prepared statements (the extended protocol: sqlx, JDBC, psycopg's server-side binding)
//!   are planned and run by datafusion-postgres in the same session, so the memory pool
//!   applies; their time limit is the client's `SET statement_timeout`. Each execution reads
//!   the tables as they are then, not as they were when the statement was prepared (drivers
//!   keep prepared statements per connection and run them again and again).
//!
//! No password is asked: like the other read endpoints, it is meant for localhost or a trusted
//! network.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::pgwire;
use datafusion_postgres::{DfSessionService, QueryHook};
use futures::StreamExt;
use pgwire::api::auth::StartupHandler;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::api::portal::Format;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{QueryResponse, Response};
use pgwire::api::{ClientInfo, ConnectionManager, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::types::format::FormatOptions;

use crate::analyst::{Analyst, SqlError};

/// Serves the PostgreSQL wire protocol on `listener` until `shutdown` completes; each
/// connection runs in its own task.
pub async fn serve(
    listener: tokio::net::TcpListener,
    analyst: Analyst,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> crate::Result<()> {
    // `pg_catalog` and PostgreSQL's functions, which psql, DBeaver, Grafana and Metabase query
    // for their table lists: decoded here, once, since only wire-protocol clients need them.
    datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog(
        analyst.context(),
        "datafusion",
        datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider,
    )
    .map_err(|e| std::io::Error::other(format!("setting up pg_catalog: {e}")))?;
    let handlers = Arc::new(Handlers::new(analyst));
    tokio::pin!(shutdown);
    loop {
        let socket = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(e) => {
                    // Out of file descriptors and the like: the next accept may succeed.
                    tracing::warn!(error = %e, "accepting a PostgreSQL connection failed");
                    continue;
                }
            },
        };
        let handlers = handlers.clone();
        tokio::spawn(async move {
            if let Err(e) = pgwire::tokio::process_socket(socket, None, handlers).await {
                tracing::debug!(error = %e, "PostgreSQL connection ended with an error");
            }
        });
    }
}

/// The pgwire handlers: datafusion-postgres's session service behind [`ReadOnly`].
struct Handlers {
    service: Arc<DfSessionService>,
    startup: Arc<Startup>,
    cancel: Arc<DefaultCancelHandler>,
}

impl Handlers {
    fn new(analyst: Analyst) -> Self {
        let ctx = Arc::new(analyst.context().clone());
        let mut hooks: Vec<Arc<dyn QueryHook>> = vec![Arc::new(ReadOnly { analyst })];
        hooks.extend(datafusion_postgres_default_hooks());
        let connections = Arc::new(ConnectionManager::new());
        Self {
            service: Arc::new(DfSessionService::new_with_hooks(ctx, hooks)),
            startup: Arc::new(Startup(connections.clone())),
            cancel: Arc::new(DefaultCancelHandler::new(connections)),
        }
    }
}

/// datafusion-postgres's own hooks (cursors, `SET`/`SHOW`, transactions), which it installs
/// only through `DfSessionService::new`: taken from there.
fn datafusion_postgres_default_hooks() -> Vec<Arc<dyn QueryHook>> {
    use datafusion_postgres::hooks::{cursor, set_show, transactions};
    vec![
        Arc::new(cursor::CursorStatementHook),
        Arc::new(set_show::SetShowHook),
        Arc::new(transactions::TransactionStatementHook),
    ]
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.service.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.service.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }
}

/// No authentication; connections are registered so `psql`'s Ctrl-C can cancel a query.
struct Startup(Arc<ConnectionManager>);

impl NoopStartupHandler for Startup {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(self.0.clone())
    }
}

/// What a statement may do here.
enum Kind {
    /// A query: run with the analyst's limits.
    Read,
    /// Session bookkeeping that datafusion-postgres's hooks answer.
    Session,
    /// Anything that would write or change the server: refused, with its leading keywords.
    Refused(String),
}

fn kind(statement: &Statement) -> Kind {
    match statement {
        Statement::Query(_)
        | Statement::Explain { .. }
        | Statement::ExplainTable { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. } => Kind::Read,
        Statement::Set(_)
        | Statement::ShowVariable { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Declare { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. } => Kind::Session,
        other => {
            let text = other.to_string();
            let mut words = text.split_whitespace();
            let first = words.next().unwrap_or("statement").to_uppercase();
            let what = match first.as_str() {
                "CREATE" | "DROP" | "ALTER" => {
                    format!("{first} {}", words.next().unwrap_or("").to_uppercase())
                }
                _ => first,
            };
            Kind::Refused(what)
        }
    }
}

/// First in line of the hooks: refuses writes and runs simple-protocol reads with limits.
struct ReadOnly {
    analyst: Analyst,
}

#[async_trait]
impl QueryHook for ReadOnly {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        match kind(statement) {
            Kind::Session => None,
            Kind::Refused(what) => Some(Err(pg_error(SqlError::ReadOnly(what)))),
            Kind::Read => Some(self.read(statement, client).await),
        }
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        match kind(statement) {
            Kind::Refused(what) => Some(Err(pg_error(SqlError::ReadOnly(what)))),
            Kind::Read => {
                // Planned over the tables as they are now.
                self.analyst.begin_statement();
                None
            }
            Kind::Session => None,
        }
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        match kind(statement) {
            Kind::Refused(what) => Some(Err(pg_error(SqlError::ReadOnly(what)))),
            Kind::Read => {
                // Each execution of a prepared statement is a statement of its own: its
                // tables' scans read them as they are now, not as they were when it was
                // prepared.
                self.analyst.begin_statement();
                None
            }
            Kind::Session => None,
        }
    }
}

impl ReadOnly {
    async fn read(
        &self,
        statement: &Statement,
        client: &mut dyn HookClient,
    ) -> PgWireResult<Response> {
        let (schema, batches) = self
            .analyst
            .stream(&statement.to_string())
            .await
            .map_err(pg_error)?;
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let fields = Arc::new(arrow_schema_to_pg_fields(
            &schema,
            &Format::UnifiedText,
            Some(options),
        )?);
        let encode = fields.clone();
        let rows = batches.flat_map(move |batch| {
            let rows: Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send> = match batch {
                Ok(batch) => encode_recordbatch(encode.clone(), batch),
                Err(e) => Box::new(std::iter::once(Err(pg_error(e)))),
            };
            futures::stream::iter(rows)
        });
        Ok(Response::Query(QueryResponse::new(fields, rows)))
    }
}

/// A refusal as PostgreSQL reports it: severity, SQLSTATE and the message (with its fix).
fn pg_error(e: SqlError) -> PgWireError {
    let code = match &e {
        SqlError::ReadOnly(_) => "25006",   // read_only_sql_transaction
        SqlError::Timeout(_) => "57014",    // query_canceled
        SqlError::Memory { .. } => "53200", // out_of_memory
        SqlError::Query(_) => "42000",      // syntax_error_or_access_rule_violation
    };
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        code.to_string(),
        e.to_string(),
    )))
}
