//! Running a rendered operation: as the reader role, in a READ ONLY transaction,
//! with a statement timeout and a row cap, converting rows to JSON.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::{pin_mut, TryStreamExt};
use postgres_types::{FromSql, IsNull, ToSql, Type};
use quarry_core::packs::render::{BindValue, PgType, RenderedQuery};
use serde::Serialize;
use serde_json::Value as Json;
use tokio_postgres::{Client, Row};

/// Limits applied to one execution.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    /// Statement timeout.
    pub timeout: Duration,
    /// At most this many rows are returned; `truncated` says whether more existed.
    pub max_rows: u64,
    /// At most this many bytes of JSON: past it the execution stops and fails
    /// with [`QueryError::TooLarge`] (memory is bounded by this, not by the data).
    pub max_bytes: u64,
    /// PostgreSQL's `work_mem` for the query in KiB (memory per sort or hash
    /// before it spills to disk); 0 leaves the server's own.
    pub work_mem_kb: u32,
}

/// The hard cap on one answer when none is configured: 64 MiB of JSON.
pub const DEFAULT_MAX_ANSWER_BYTES: u64 = 64 * 1024 * 1024;

/// A result column.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct OutColumn {
    pub name: String,
    /// The Postgres type name (`numeric`, `text`, `timestamptz`, ...).
    pub pg_type: String,
}

/// The rows of one execution.
#[derive(Debug, Clone, Serialize)]
pub struct QueryOutput {
    pub columns: Vec<OutColumn>,
    pub rows: Vec<Vec<Json>>,
    /// True when the row cap cut the result.
    pub truncated: bool,
    pub elapsed_ms: u64,
}

impl QueryOutput {
    /// Rows as JSON objects keyed by column name.
    pub fn row_objects(&self) -> Vec<serde_json::Map<String, Json>> {
        self.rows
            .iter()
            .map(|r| {
                self.columns
                    .iter()
                    .zip(r.iter())
                    .map(|(c, v)| (c.name.clone(), v.clone()))
                    .collect()
            })
            .collect()
    }
}

/// Why an execution failed. `Display` is safe to show to callers.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("the query was cancelled after the statement timeout of {0:?}")]
    Timeout(Duration),
    #[error("the database is unavailable")]
    Unavailable(#[source] tokio_postgres::Error),
    #[error("SQL error {sqlstate}: {message}")]
    Sql {
        sqlstate: String,
        message: String,
        hint: Option<String>,
        /// 1-based character position in the statement, if Postgres reported one.
        position: Option<u32>,
        /// True for errors worth retrying (serialization failure, deadlock, lost connection).
        transient: bool,
    },
    #[error("column `{column}` has type {pg_type}, which results cannot carry; cast it (for example to text) in the SQL")]
    UnsupportedType { column: String, pg_type: String },
    #[error("the answer passed the limit of {cap} bytes after {rows} rows")]
    TooLarge { cap: u64, rows: u64 },
}

impl QueryError {
    /// Whether retrying the same statement may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            QueryError::Unavailable(_) => true,
            QueryError::Sql { transient, .. } => *transient,
            _ => false,
        }
    }
}

impl From<tokio_postgres::Error> for QueryError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => {
                let code = db.code().code().to_string();
                let position = match db.position() {
                    Some(tokio_postgres::error::ErrorPosition::Original(p)) => Some(*p),
                    _ => None,
                };
                QueryError::Sql {
                    transient: matches!(
                        code.as_str(),
                        "40001" | "40P01" | "08000" | "08003" | "08006" | "57P01" | "53300"
                    ),
                    sqlstate: code,
                    message: db.message().to_string(),
                    hint: db.hint().map(str::to_string),
                    position,
                }
            }
            None => QueryError::Unavailable(e),
        }
    }
}

/// Runs `q` in a READ ONLY transaction with `limits`. The client must be
/// connected as the reader role (see [`crate::connect_reader`]).
pub async fn run(
    client: &mut Client,
    q: &RenderedQuery,
    limits: QueryLimits,
) -> Result<QueryOutput, QueryError> {
    run_prepared(client, None, q, limits).await
}

/// The Postgres types of a rendered query's binds, in `$n` order (what a
/// statement cache prepares with).
pub fn bind_types(q: &RenderedQuery) -> Vec<Type> {
    q.binds.iter().map(|b| pg_type(b.pg_type)).collect()
}

/// [`run`] with a statement already prepared for `q` on this connection (from a
/// statement cache, so a hot operation is parsed once per connection), or
/// `None` to prepare it here.
pub async fn run_prepared(
    client: &mut Client,
    prepared: Option<tokio_postgres::Statement>,
    q: &RenderedQuery,
    limits: QueryLimits,
) -> Result<QueryOutput, QueryError> {
    let started = Instant::now();
    let tx = client.build_transaction().read_only(true).start().await?;
    let out = fetch_in(&tx, prepared, q, limits, started).await;
    // Read-only: nothing to keep. Dropping the transaction queues its ROLLBACK
    // (which also ends a truncated portal) ahead of the connection's next request,
    // without waiting for it here.
    drop(tx);
    out
}

/// The session settings [`run_light`] keeps on a reader connection: what it
/// last set there, so that it sends `SET` only when a call needs another
/// timeout. `Default` is a connection it has not set yet.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SessionState {
    /// The statement timeout and `work_mem` last set, if any.
    set: Option<(u64, u32)>,
}

/// Runs a pack's own (checked, single `SELECT`) statement without a transaction
/// of its own: one pipelined round trip, as `pgbench -M prepared` does, instead
/// of `BEGIN`, `SET LOCAL`, a portal and `ROLLBACK`.
///
/// What the transaction gave is kept:
/// - **read-only:** the implicit transaction is read-only by the reader role's
///   `default_transaction_read_only`, set on the session too; a pack's SQL can
///   change no setting (the parser check refuses `SET` and `set_config`);
/// - **the timeout is this call's own:** `statement_timeout` and `lock_timeout`
///   are set on the session whenever `state` says they differ from this
///   call's, pipelined ahead of the query (a light call after a heavy one on
///   the same connection sets its short limit back);
/// - **the row cap:** rows past `max_rows` are not read (one more says the cap
///   cut the answer); with the cap in the SQL ([`RenderedQuery::with_row_limit`],
///   as `ops::prepare` writes it unless the caller asks for `cap_on_client`)
///   the database stops there too, otherwise it still sends them, bounded by
///   the timeout.
///
/// Not for caller-supplied SQL, which could change the session: that runs in
/// [`run`]'s transaction and the connection is discarded after.
pub async fn run_light(
    client: &Client,
    state: &mut SessionState,
    prepared: &tokio_postgres::Statement,
    q: &RenderedQuery,
    limits: QueryLimits,
) -> Result<QueryOutput, QueryError> {
    let started = Instant::now();
    let ms = limits.timeout.as_millis().clamp(1, 3_600_000) as u64;
    let wanted = (ms, limits.work_mem_kb);
    let settings = (state.set != Some(wanted)).then(|| {
        // JIT off: see `bind_portal`.
        format!(
            "SET statement_timeout = {ms}; SET lock_timeout = {ms}; SET jit = off; \
             SET default_transaction_read_only = on; {}",
            work_mem_setting(limits.work_mem_kb, "")
        )
    });
    let params: Vec<Param<'_>> = q.binds.iter().map(|b| Param(&b.value)).collect();
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    let set = async {
        match &settings {
            Some(s) => client.batch_execute(s).await,
            None => Ok(()),
        }
    };
    // Polled together, the two go out in this order in one write.
    let (set, stream) = futures_util::join!(set, client.query_raw(prepared, refs));
    // Unknown after a failure (the connection may be gone): set it again next time.
    *state = SessionState::default();
    set.map_err(|e| classify(e, limits.timeout))?;
    state.set = Some(wanted);
    let stream = stream.map_err(|e| classify(e, limits.timeout))?;
    // Past the cap, dropping the stream leaves the rest to the connection,
    // which reads and discards it before its next request.
    collect(stream, stream_columns(prepared), limits, started).await
}

/// Reads `stream` into rows: at most `max_rows` (one more says the cap cut
/// the answer), failing once the answer passes `max_bytes` of JSON.
async fn collect(
    stream: tokio_postgres::RowStream,
    columns: Vec<OutColumn>,
    limits: QueryLimits,
    started: Instant,
) -> Result<QueryOutput, QueryError> {
    pin_mut!(stream);
    // Bytes of the answer as JSON objects: 2 for the brackets, then per row the
    // braces, the keys and the values (see `json_len`).
    let keys: u64 = columns.iter().map(|c| c.name.len() as u64 + 4).sum();
    let mut bytes: u64 = 2;
    let mut rows = Vec::new();
    let mut truncated = false;
    while let Some(row) = stream
        .try_next()
        .await
        .map_err(|e| classify(e, limits.timeout))?
    {
        if rows.len() as u64 >= limits.max_rows {
            truncated = true;
            break;
        }
        let values = row_to_json(&row)?;
        bytes += 3 + keys + values.iter().map(json_len).sum::<u64>();
        if bytes > limits.max_bytes {
            return Err(QueryError::TooLarge {
                cap: limits.max_bytes,
                rows: rows.len() as u64,
            });
        }
        rows.push(values);
    }
    Ok(QueryOutput {
        columns,
        rows,
        truncated,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

/// `SET [LOCAL] work_mem` for `kb`, or back to the server's own for 0.
fn work_mem_setting(kb: u32, local: &str) -> String {
    if kb == 0 {
        format!("SET {local}work_mem TO DEFAULT")
    } else {
        format!("SET {local}work_mem = '{kb}kB'")
    }
}

fn stream_columns(stmt: &tokio_postgres::Statement) -> Vec<OutColumn> {
    stmt.columns()
        .iter()
        .map(|c| OutColumn {
            name: c.name().to_string(),
            pg_type: c.type_().name().to_string(),
        })
        .collect()
}

/// A result read batch by batch, so that memory holds one batch whatever the
/// size of the answer: a portal in the caller's read-only transaction, fetched
/// `n` rows at a time (each fetch a statement under the statement timeout; the
/// transaction also ends itself if its reader stalls longer than that).
pub struct RowCursor<'t, 'c> {
    tx: &'t tokio_postgres::Transaction<'c>,
    portal: tokio_postgres::Portal,
    /// The result's columns.
    pub columns: Vec<OutColumn>,
    limits: QueryLimits,
    seen: u64,
    done: bool,
    /// True once the row cap cut the result (known when the cursor is done).
    pub truncated: bool,
}

/// Prepares (unless given) and binds `q` in `tx` under the limits' timeouts:
/// the portal and the result's columns. The settings and the bind go out
/// together (tokio-postgres pipelines requests polled together, in order): one
/// round trip. With `batched` (a reader that fetches at its own pace), the
/// transaction also ends if that reader stalls past twice the timeout.
async fn bind_portal(
    tx: &tokio_postgres::Transaction<'_>,
    prepared: Option<tokio_postgres::Statement>,
    q: &RenderedQuery,
    limits: QueryLimits,
    batched: bool,
) -> Result<(tokio_postgres::Portal, Vec<OutColumn>), QueryError> {
    let ms = limits.timeout.as_millis().clamp(1, 3_600_000) as u64;
    // JIT off: the operations' CTEs carry no statistics, so their estimated costs
    // pass jit_above_cost on small data and compiling took longer than running
    // (data_integrity_analysis at 100k records: 1.65 s with JIT, 0.47 s without;
    // no operation measured faster with it).
    let mut settings = format!(
        "SET LOCAL statement_timeout = {ms}; SET LOCAL lock_timeout = {ms}; SET LOCAL jit = off; {}",
        work_mem_setting(limits.work_mem_kb, "LOCAL ")
    );
    if batched {
        settings.push_str(&format!(
            "; SET LOCAL idle_in_transaction_session_timeout = {}",
            ms.max(1000) * 2
        ));
    }
    let stmt = match prepared {
        Some(stmt) => stmt,
        None => tx
            .prepare_typed(&q.sql, &bind_types(q))
            .await
            .map_err(|e| classify(e, limits.timeout))?,
    };
    let params: Vec<Param<'_>> = q.binds.iter().map(|b| Param(&b.value)).collect();
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    let (set, portal) = futures_util::join!(tx.batch_execute(&settings), tx.bind(&stmt, &refs));
    set.map_err(|e| classify(e, limits.timeout))?;
    let portal = portal.map_err(|e| classify(e, limits.timeout))?;
    Ok((portal, stream_columns(&stmt)))
}

/// Opens `q` as a [`RowCursor`] in `tx` (the byte cap does not apply: the
/// caller writes rows out as they come; the row cap does).
pub async fn open_cursor<'t, 'c>(
    tx: &'t tokio_postgres::Transaction<'c>,
    prepared: Option<tokio_postgres::Statement>,
    q: &RenderedQuery,
    limits: QueryLimits,
) -> Result<RowCursor<'t, 'c>, QueryError> {
    let (portal, columns) = bind_portal(tx, prepared, q, limits, true).await?;
    Ok(RowCursor {
        tx,
        portal,
        columns,
        limits,
        seen: 0,
        done: false,
        truncated: false,
    })
}

impl RowCursor<'_, '_> {
    /// The next at most `n` rows (as JSON values in column order), or `None`
    /// when the result, or the row cap, is done.
    pub async fn next_batch(&mut self, n: usize) -> Result<Option<Vec<Vec<Json>>>, QueryError> {
        if self.done {
            return Ok(None);
        }
        let left = self.limits.max_rows.saturating_sub(self.seen);
        if left == 0 {
            // At the cap: one more row says whether the cap cut the result.
            let more = self.fetch(1).await?;
            self.truncated = !more.is_empty();
            self.done = true;
            return Ok(None);
        }
        let want = (n.max(1) as u64).min(left);
        let rows = self.fetch(i32::try_from(want).unwrap_or(i32::MAX)).await?;
        self.seen += rows.len() as u64;
        if (rows.len() as u64) < want {
            self.done = true;
        }
        Ok((!rows.is_empty()).then_some(rows))
    }

    /// Rows read so far.
    pub fn rows_read(&self) -> u64 {
        self.seen
    }

    async fn fetch(&self, n: i32) -> Result<Vec<Vec<Json>>, QueryError> {
        let timeout = self.limits.timeout;
        let stream = self
            .tx
            .query_portal_raw(&self.portal, n)
            .await
            .map_err(|e| classify(e, timeout))?;
        pin_mut!(stream);
        let mut rows = Vec::with_capacity(usize::try_from(n).unwrap_or(0).min(65_536));
        while let Some(row) = stream.try_next().await.map_err(|e| classify(e, timeout))? {
            rows.push(row_to_json(&row)?);
        }
        Ok(rows)
    }
}

/// Runs `q` inside a transaction the caller opened (and ends): `quarry test`
/// gives rows and runs the operation in one transaction it rolls back.
pub async fn run_in(
    tx: &tokio_postgres::Transaction<'_>,
    q: &RenderedQuery,
    limits: QueryLimits,
) -> Result<QueryOutput, QueryError> {
    fetch_in(tx, None, q, limits, Instant::now()).await
}

async fn fetch_in(
    tx: &tokio_postgres::Transaction<'_>,
    prepared: Option<tokio_postgres::Statement>,
    q: &RenderedQuery,
    limits: QueryLimits,
    started: Instant,
) -> Result<QueryOutput, QueryError> {
    // At most max_rows + 1 rows: the database stops there, and the extra row
    // tells us the result was cut. A statement with the cap in its SQL runs in
    // one execution (fetch 0: all), which PostgreSQL may run in parallel; it
    // never does for a portal fetching a row count, as caller SQL's must.
    let (portal, columns) = bind_portal(tx, prepared, q, limits, false).await?;
    let fetch = match q.row_limit {
        Some(_) => 0,
        None => i32::try_from(limits.max_rows.saturating_add(1)).unwrap_or(i32::MAX),
    };
    let stream = tx
        .query_portal_raw(&portal, fetch)
        .await
        .map_err(|e| classify(e, limits.timeout))?;
    // Dropping the stream early leaves the portal to the transaction's end.
    collect(stream, columns, limits, started).await
}

/// The length of a value as compact JSON, without writing it (escapes counted
/// as one byte: a bound for a cap, not an exact size).
pub fn json_len(v: &Json) -> u64 {
    match v {
        Json::Null => 4,
        Json::Bool(b) => 4 + u64::from(!*b),
        Json::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => digits(u),
            (None, Some(i)) => 1 + digits(i.unsigned_abs()),
            // The longest shortest round-trip form of an f64.
            _ => 24,
        },
        Json::String(s) => s.len() as u64 + 2,
        Json::Array(a) => 2 + a.iter().map(|x| json_len(x) + 1).sum::<u64>(),
        Json::Object(o) => {
            2 + o
                .iter()
                .map(|(k, x)| k.len() as u64 + 4 + json_len(x))
                .sum::<u64>()
        }
    }
}

fn digits(n: u64) -> u64 {
    u64::from(n.checked_ilog10().unwrap_or(0)) + 1
}

fn classify(e: tokio_postgres::Error, timeout: Duration) -> QueryError {
    match QueryError::from(e) {
        QueryError::Sql { sqlstate, .. } if sqlstate == "57014" => QueryError::Timeout(timeout),
        other => other,
    }
}

/// The Postgres types and values of a rendered query's binds, in `$n` order.
fn binds_of(q: &RenderedQuery) -> (Vec<Type>, Vec<Param<'_>>) {
    let types = q.binds.iter().map(|b| pg_type(b.pg_type)).collect();
    let params = q.binds.iter().map(|b| Param(&b.value)).collect();
    (types, params)
}

fn pg_type(t: PgType) -> Type {
    match t {
        PgType::Text | PgType::Interval => Type::TEXT,
        PgType::Int8 => Type::INT8,
        PgType::Float8 => Type::FLOAT8,
        PgType::Bool => Type::BOOL,
        PgType::Date => Type::DATE,
        PgType::Timestamptz => Type::TIMESTAMPTZ,
        PgType::TextArray => Type::TEXT_ARRAY,
        PgType::Int8Array => Type::INT8_ARRAY,
    }
}

/// Newtype so the orphan rule lets us implement ToSql.
#[derive(Debug)]
pub(crate) struct Param<'a>(&'a BindValue);

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self.0 {
            BindValue::Null => Ok(IsNull::Yes),
            BindValue::Text(s) => s.to_sql(ty, out),
            BindValue::Int(i) => i.to_sql(ty, out),
            BindValue::Float(f) => f.to_sql(ty, out),
            BindValue::Bool(b) => b.to_sql(ty, out),
            BindValue::Date(d) => d.to_sql(ty, out),
            BindValue::Timestamp(t) => t.with_timezone(&chrono::Utc).to_sql(ty, out),
            BindValue::TextArray(v) => v.to_sql(ty, out),
            BindValue::IntArray(v) => v.to_sql(ty, out),
        }
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    postgres_types::to_sql_checked!();
}

/// Converts one row; every supported Postgres type maps to a natural JSON value.
pub fn row_to_json(row: &Row) -> Result<Vec<Json>, QueryError> {
    let mut out = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let t = col.type_();
        let v = cell(row, i, t).ok_or_else(|| QueryError::UnsupportedType {
            column: col.name().to_string(),
            pg_type: t.name().to_string(),
        })?;
        out.push(v);
    }
    Ok(out)
}

fn cell(row: &Row, i: usize, t: &Type) -> Option<Json> {
    macro_rules! get {
        ($ty:ty) => {
            row.try_get::<_, Option<$ty>>(i).ok()?
        };
    }
    let v = match *t {
        Type::BOOL => get!(bool).map(Json::Bool),
        Type::INT2 => get!(i16).map(Json::from),
        Type::INT4 => get!(i32).map(Json::from),
        Type::INT8 => get!(i64).map(Json::from),
        Type::OID | Type::REGCLASS | Type::REGPROC | Type::REGTYPE => get!(u32).map(Json::from),
        Type::CHAR => get!(i8).map(|c| Json::from(((c as u8) as char).to_string())),
        Type::FLOAT4 => {
            get!(f32).and_then(|f| serde_json::Number::from_f64(f64::from(f)).map(Json::Number))
        }
        Type::FLOAT8 => get!(f64).and_then(|f| serde_json::Number::from_f64(f).map(Json::Number)),
        Type::NUMERIC => get!(PgNumeric).and_then(|n| n.to_json()),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            get!(String).map(Json::from)
        }
        Type::DATE => get!(chrono::NaiveDate).map(|d| Json::from(d.format("%Y-%m-%d").to_string())),
        Type::TIMESTAMP => get!(chrono::NaiveDateTime)
            .map(|d| Json::from(d.format("%Y-%m-%dT%H:%M:%S%.f").to_string())),
        Type::TIMESTAMPTZ => {
            get!(chrono::DateTime<chrono::Utc>).map(|d| Json::from(d.to_rfc3339()))
        }
        Type::JSON | Type::JSONB => get!(Json),
        Type::UUID => get!(uuid::Uuid).map(|u| Json::from(u.to_string())),
        Type::INTERVAL => get!(PgInterval).map(|iv| Json::from(iv.to_string())),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::NAME_ARRAY | Type::BPCHAR_ARRAY => {
            get!(Vec<Option<String>>).map(Json::from)
        }
        Type::INT2_ARRAY => get!(Vec<Option<i16>>).map(Json::from),
        Type::INT4_ARRAY => get!(Vec<Option<i32>>).map(Json::from),
        Type::INT8_ARRAY => get!(Vec<Option<i64>>).map(Json::from),
        Type::FLOAT8_ARRAY => get!(Vec<Option<f64>>).map(Json::from),
        Type::BOOL_ARRAY => get!(Vec<Option<bool>>).map(Json::from),
        Type::NUMERIC_ARRAY => get!(Vec<Option<PgNumeric>>).map(|v| {
            Json::Array(
                v.into_iter()
                    .map(|n| n.and_then(|n| n.to_json()).unwrap_or(Json::Null))
                    .collect(),
            )
        }),
        _ => return None,
    };
    Some(v.unwrap_or(Json::Null))
}

/// A Postgres `numeric`, decoded from the binary format into its exact decimal text.
#[derive(Debug, Clone, PartialEq)]
pub struct PgNumeric(pub Option<String>);

impl PgNumeric {
    /// As JSON without losing a digit: a JSON number when a double holds the
    /// value exactly (what JSON parsers read numbers into), else the exact
    /// decimal as a string (`"12345678901234567.89"`). NaN and infinities are null.
    pub fn to_json(&self) -> Option<Json> {
        let s = self.0.as_ref()?;
        if let Ok(i) = s.parse::<i64>() {
            if i.unsigned_abs() <= MAX_EXACT_INT {
                return Some(Json::from(i));
            }
            return Some(Json::String(s.clone()));
        }
        let f = s.parse::<f64>().ok().filter(|f| f.is_finite())?;
        // Up to 15 significant digits a double always gives the decimal back
        // (DBL_DIG): the common case costs no formatting.
        if significant_digits(s) <= 15 || same_decimal(s, &format!("{f:?}")) {
            serde_json::Number::from_f64(f).map(Json::Number)
        } else {
            Some(Json::String(s.clone()))
        }
    }
}

/// 2^53: integers up to this are exact in a double.
const MAX_EXACT_INT: u64 = 1 << 53;

/// Digits of a decimal text without its leading and trailing zeros.
fn significant_digits(s: &str) -> usize {
    let digits = s.bytes().filter(u8::is_ascii_digit);
    let lead = digits.clone().take_while(|&b| b == b'0').count();
    let total = digits.clone().count();
    let trail = if s.contains('.') {
        s.bytes().rev().take_while(|&b| b == b'0').count()
    } else {
        // An integer's trailing zeros are significant for i64 beyond 2^53,
        // which never reaches here; count them to stay on the careful side.
        0
    };
    total.saturating_sub(lead + trail)
}

/// True when two decimal texts name the same number (`4011.00` and `4011.0`,
/// `1e-7` and `0.0000001`): compared as digits and a decimal exponent.
fn same_decimal(a: &str, b: &str) -> bool {
    fn norm(s: &str) -> Option<(bool, String, i64)> {
        let (neg, s) = s.strip_prefix('-').map_or((false, s), |r| (true, r));
        let (mantissa, exp) = match s.find(['e', 'E']) {
            Some(i) => (&s[..i], s[i + 1..].parse::<i64>().ok()?),
            None => (s, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let digits = format!("{int}{frac}");
        let exp = exp + int.len() as i64;
        let lead = digits.len() - digits.trim_start_matches('0').len();
        let digits = digits.trim_matches('0').to_string();
        if digits.is_empty() {
            return Some((false, String::new(), 0));
        }
        Some((neg, digits, exp - lead as i64))
    }
    matches!((norm(a), norm(b)), (Some(x), Some(y)) if x == y)
}

impl<'a> FromSql<'a> for PgNumeric {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let word = |i: usize| -> Result<u16, Box<dyn std::error::Error + Sync + Send>> {
            raw.get(i..i + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .ok_or_else(|| "truncated numeric".into())
        };
        let ndigits = word(0)? as usize;
        let weight = word(2)? as i16 as i32;
        let sign = word(4)?;
        let dscale = word(6)? as usize;
        if sign == 0xC000 || sign == 0xD000 || sign == 0xF000 {
            return Ok(PgNumeric(None));
        }
        let digits: Vec<u16> = (0..ndigits)
            .map(|k| word(8 + 2 * k))
            .collect::<Result<_, _>>()?;
        let digit = |idx: i32| -> u16 {
            if idx >= 0 {
                digits.get(idx as usize).copied().unwrap_or(0)
            } else {
                0
            }
        };
        let mut s = String::new();
        if sign == 0x4000 {
            s.push('-');
        }
        if weight < 0 {
            s.push('0');
        } else {
            for idx in 0..=weight {
                if idx == 0 {
                    s.push_str(&digit(idx).to_string());
                } else {
                    s.push_str(&format!("{:04}", digit(idx)));
                }
            }
        }
        if dscale > 0 {
            let mut frac = String::new();
            for k in 0..dscale.div_ceil(4) as i32 {
                frac.push_str(&format!("{:04}", digit(weight + 1 + k)));
            }
            frac.truncate(dscale);
            s.push('.');
            s.push_str(&frac);
        }
        Ok(PgNumeric(Some(s)))
    }
    fn accepts(t: &Type) -> bool {
        *t == Type::NUMERIC
    }
}

/// A Postgres `interval`, shown as `N mons N days HH:MM:SS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgInterval {
    pub months: i32,
    pub days: i32,
    pub micros: i64,
}

impl std::fmt::Display for PgInterval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        let (y, m) = (self.months / 12, self.months % 12);
        if y != 0 {
            parts.push(format!("{y} year{}", if y.abs() == 1 { "" } else { "s" }));
        }
        if m != 0 {
            parts.push(format!("{m} mon{}", if m.abs() == 1 { "" } else { "s" }));
        }
        if self.days != 0 {
            parts.push(format!(
                "{} day{}",
                self.days,
                if self.days.abs() == 1 { "" } else { "s" }
            ));
        }
        if self.micros != 0 || parts.is_empty() {
            let neg = self.micros < 0;
            let total = self.micros.unsigned_abs();
            let secs = total / 1_000_000;
            let frac = total % 1_000_000;
            let mut t = format!(
                "{}{:02}:{:02}:{:02}",
                if neg { "-" } else { "" },
                secs / 3600,
                (secs / 60) % 60,
                secs % 60
            );
            if frac != 0 {
                t.push_str(&format!(".{frac:06}"));
            }
            parts.push(t);
        }
        f.write_str(&parts.join(" "))
    }
}

impl<'a> FromSql<'a> for PgInterval {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        if raw.len() != 16 {
            return Err("invalid interval".into());
        }
        let micros = i64::from_be_bytes(raw[0..8].try_into()?);
        let days = i32::from_be_bytes(raw[8..12].try_into()?);
        let months = i32::from_be_bytes(raw[12..16].try_into()?);
        Ok(PgInterval {
            months,
            days,
            micros,
        })
    }
    fn accepts(t: &Type) -> bool {
        *t == Type::INTERVAL
    }
}

/// What `quarry check` learns from the database about a rendered pack.
#[derive(Debug, Clone)]
pub struct ExplainReport {
    pub columns: Vec<OutColumn>,
    /// The top `Plan` object of `EXPLAIN (FORMAT JSON)`.
    pub plan: serde_json::Value,
}

/// Prepares and EXPLAINs `q` as the reader, without running it.
pub async fn explain(client: &mut Client, q: &RenderedQuery) -> Result<ExplainReport, QueryError> {
    let tx = client.build_transaction().read_only(true).start().await?;
    tx.batch_execute("SET LOCAL statement_timeout = 10000")
        .await?;
    let (types, params) = binds_of(q);
    let stmt = tx.prepare_typed(&q.sql, &types).await?;
    let columns = stmt
        .columns()
        .iter()
        .map(|c| OutColumn {
            name: c.name().to_string(),
            pg_type: c.type_().name().to_string(),
        })
        .collect();
    let explain_sql = format!("EXPLAIN (FORMAT JSON) {}", q.sql);
    let estmt = tx.prepare_typed(&explain_sql, &types).await?;
    let rows = tx
        .query(
            &estmt,
            &params
                .iter()
                .map(|p| p as &(dyn ToSql + Sync))
                .collect::<Vec<_>>(),
        )
        .await?;
    let plan = rows
        .first()
        .and_then(|r| r.try_get::<_, serde_json::Value>(0).ok())
        .and_then(|v| v.get(0).and_then(|p| p.get("Plan")).cloned())
        .unwrap_or_default();
    let _ = tx.rollback().await;
    Ok(ExplainReport { columns, plan })
}

#[cfg(test)]
mod numeric_tests {
    use super::*;

    #[test]
    fn numerics_are_exact_numbers_or_exact_strings() {
        let j = |s: &str| PgNumeric(Some(s.to_string())).to_json();
        assert_eq!(j("4011.00"), Some(serde_json::json!(4011.0)));
        assert_eq!(j("49.86"), Some(serde_json::json!(49.86)));
        assert_eq!(j("-0.0000001"), Some(serde_json::json!(-1e-7)));
        assert_eq!(j("42"), Some(serde_json::json!(42)));
        assert_eq!(
            j("12345678901234567.89"),
            Some(serde_json::json!("12345678901234567.89"))
        );
        assert_eq!(
            j("9007199254740993"),
            Some(serde_json::json!("9007199254740993"))
        );
        assert_eq!(
            j("0.1000000000000000055511151231257827"),
            Some(serde_json::json!("0.1000000000000000055511151231257827"))
        );
        assert_eq!(j("0.00"), Some(serde_json::json!(0.0)));
        assert_eq!(PgNumeric(None).to_json(), None);
    }
}
