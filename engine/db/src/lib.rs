//! # quarry-db
//!
//! Quarry's PostgreSQL adapter: connecting (owner, writer and reader roles),
//! embedded migrations, and running rendered operations as the read-only role
//! with a statement timeout and a row cap.

pub mod backfill;
pub mod companies;
pub mod docs;
pub mod exec;
pub mod ingest;
pub mod ledger;
pub mod migrate;
pub mod ops;
pub mod packcheck;
pub mod packtest;
pub mod quarantine;
pub mod store;
pub mod version;

use anyhow::{Context, Result};
use tokio_postgres::NoTls;

pub use exec::{
    bind_types, open_cursor, run, run_light, run_prepared, OutColumn, QueryError, QueryLimits,
    QueryOutput, RowCursor, SessionState,
};
pub use migrate::{migrate, migrate_with, RolePasswords, READER_ROLE, WRITER_ROLE};
pub use ops::{execute_pack, CallOptions, RunError};
pub use tokio_postgres::Client;

/// Used when neither `--database-url` nor `DATABASE_URL` is given.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/quarry";

/// Connects and drives the connection on a background task.
pub async fn connect(url: &str) -> Result<Client> {
    let (client, conn) = match tokio_postgres::connect(url, NoTls).await {
        Ok(c) => c,
        Err(e) => {
            let hint = login_hint(url, &e);
            let err = anyhow::Error::new(e)
                .context(format!("connecting to PostgreSQL at {}", redact(url)));
            return Err(match hint {
                Some(h) => err.context(h),
                None => err,
            });
        }
    };
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %e, "database connection closed with an error");
        }
    });
    Ok(client)
}

/// The URL for another role on the same database: the user replaced, the password
/// taken from `password` (or removed).
pub fn url_for_role(url: &str, role: &str, password: Option<&str>) -> Result<String> {
    let mut u = url::Url::parse(url).with_context(|| {
        format!(
            "DATABASE_URL must be a postgres:// URL, got {}",
            redact(url)
        )
    })?;
    u.set_username(role)
        .map_err(|_| anyhow::anyhow!("cannot set the user of {}", redact(url)))?;
    u.set_password(password)
        .map_err(|_| anyhow::anyhow!("cannot set the password of {}", redact(url)))?;
    Ok(u.to_string())
}

/// The reader role's URL: `QUARRY_READER_URL` if set, else `DATABASE_URL` with the
/// user replaced by `quarry_reader` and the password from `QUARRY_READER_PASSWORD`.
pub fn reader_url(database_url: &str) -> Result<String> {
    if let Ok(u) = std::env::var("QUARRY_READER_URL") {
        return Ok(u);
    }
    let pw = std::env::var("QUARRY_READER_PASSWORD").ok();
    url_for_role(database_url, READER_ROLE, pw.as_deref())
}

/// The writer role's URL (ingest): `QUARRY_WRITER_URL` if set, else `DATABASE_URL`
/// with the user replaced by `quarry_writer` and the password from `QUARRY_WRITER_PASSWORD`.
pub fn writer_url(database_url: &str) -> Result<String> {
    if let Ok(u) = std::env::var("QUARRY_WRITER_URL") {
        return Ok(u);
    }
    let pw = std::env::var("QUARRY_WRITER_PASSWORD").ok();
    url_for_role(database_url, WRITER_ROLE, pw.as_deref())
}

/// Connects as the read-only analytics role.
pub async fn connect_reader(database_url: &str) -> Result<Client> {
    connect(&reader_url(database_url)?).await
}

/// When `e` is a refused login (wrong or missing password, unknown role), what
/// to set: the setting that gives this role's password or URL.
pub fn login_hint(url: &str, e: &tokio_postgres::Error) -> Option<String> {
    use tokio_postgres::error::SqlState;
    let refused = e.code().is_some_and(|c| {
        *c == SqlState::INVALID_PASSWORD || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    }) || e.to_string().contains("password missing");
    if !refused {
        return None;
    }
    let user = url::Url::parse(url)
        .ok()
        .map(|u| u.username().to_string())
        .unwrap_or_default();
    Some(login_hint_for(&user))
}

/// What to set so that `user` can log in (the message of a refused login).
pub fn login_hint_for(user: &str) -> String {
    match user {
        READER_ROLE => format!(
            "the database refused the login of the analytics role `{READER_ROLE}`: set \
             QUARRY_READER_PASSWORD to that role's password (the one `quarry migrate` ran with) (or QUARRY_READER_URL \
             to a full URL for that role)"
        ),
        WRITER_ROLE => format!(
            "the database refused the login of the ingest role `{WRITER_ROLE}`: set \
             QUARRY_WRITER_PASSWORD to that role's password (the one `quarry migrate` ran with) (or QUARRY_WRITER_URL \
             to a full URL for that role)"
        ),
        other => format!(
            "the database refused the login of `{other}`: fix the user or password in \
             DATABASE_URL (or --database-url)"
        ),
    }
}

/// A URL with any password replaced by `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "<unparseable database URL>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_login_names_the_setting_of_its_role() {
        assert!(login_hint_for(READER_ROLE).contains("QUARRY_READER_PASSWORD"));
        assert!(login_hint_for(READER_ROLE).contains("QUARRY_READER_URL"));
        assert!(login_hint_for(WRITER_ROLE).contains("QUARRY_WRITER_PASSWORD"));
        assert!(login_hint_for("postgres").contains("DATABASE_URL"));
    }
}
