//! Versioned migrations, embedded in the binary, applied in order under an
//! advisory lock so concurrent `quarry migrate` / `quarry serve` starts are safe.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

/// Embedded migrations: (version, name, SQL). Never edit an applied migration;
/// add a new one. The checksum of each applied migration is verified.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "canonical_schema",
        include_str!("../migrations/0001_canonical_schema.sql"),
    ),
    (
        2,
        "reference_resolution",
        include_str!("../migrations/0002_reference_resolution.sql"),
    ),
    (
        3,
        "result_cache",
        include_str!("../migrations/0003_result_cache.sql"),
    ),
    (
        4,
        "jobs_and_keys",
        include_str!("../migrations/0004_jobs_and_keys.sql"),
    ),
    (
        5,
        "key_check",
        include_str!("../migrations/0005_key_check.sql"),
    ),
    (
        6,
        "real_exports",
        include_str!("../migrations/0006_real_exports.sql"),
    ),
    (
        7,
        "order_independent_versions",
        include_str!("../migrations/0007_order_independent_versions.sql"),
    ),
    (
        8,
        "operations_views",
        include_str!("../migrations/0008_operations_views.sql"),
    ),
    (
        9,
        "companies",
        include_str!("../migrations/0009_companies.sql"),
    ),
    (
        10,
        "company_queue",
        include_str!("../migrations/0010_company_queue.sql"),
    ),
];

const ROLES_SQL: &str = include_str!("../sql/roles.sql");
/// Takes signalling, advisory-lock, notify and set_config functions from PUBLIC
/// (run as the connecting login, which must be a superuser for it to apply).
const CONFINE_SQL: &str = include_str!("../sql/confine.sql");
/// Arbitrary constant for pg_advisory_lock: "quarry" in ASCII.
const MIGRATION_LOCK: i64 = 0x0000_7175_6172_7279;

/// The three database roles Quarry uses.
pub const OWNER_ROLE: &str = "quarry_owner";
pub const WRITER_ROLE: &str = "quarry_writer";
pub const READER_ROLE: &str = "quarry_reader";

/// Outcome of a migrate run.
#[derive(Debug, Default)]
pub struct MigrateReport {
    pub applied: Vec<String>,
    pub already: usize,
}

/// Passwords to give the login roles (`None` leaves a role's password as it is).
#[derive(Debug, Clone, Default)]
pub struct RolePasswords {
    pub writer: Option<String>,
    pub reader: Option<String>,
}

impl RolePasswords {
    /// From `QUARRY_WRITER_PASSWORD` and `QUARRY_READER_PASSWORD`.
    pub fn from_env() -> Self {
        RolePasswords {
            writer: std::env::var("QUARRY_WRITER_PASSWORD").ok(),
            reader: std::env::var("QUARRY_READER_PASSWORD").ok(),
        }
    }
}

/// Creates roles if needed, applies pending migrations as the owner role, and
/// re-applies grants. Safe to run concurrently and repeatedly. Role passwords
/// come from the environment ([`RolePasswords::from_env`]).
pub async fn migrate(client: &mut Client) -> Result<MigrateReport> {
    migrate_with(client, &RolePasswords::from_env()).await
}

/// [`migrate`] with the login roles' passwords given (the AWS migration
/// function takes them from Secrets Manager).
pub async fn migrate_with(client: &mut Client, passwords: &RolePasswords) -> Result<MigrateReport> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .context("taking the migration lock")?;
    let result = migrate_locked(client, passwords).await;
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    result
}

async fn migrate_locked(client: &mut Client, passwords: &RolePasswords) -> Result<MigrateReport> {
    // Roles are cluster-wide and advisory locks are per database, so migrations of
    // two databases can race on the same role rows ("tuple concurrently updated"):
    // retry a few times with a short pause.
    let mut attempt = 0;
    loop {
        match ensure_roles(client, passwords).await {
            Ok(()) => break,
            Err(e) if attempt < 5 => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "retrying role setup");
                tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
    let db: String = client
        .query_one("SELECT current_database()", &[])
        .await?
        .get(0);
    client
        .batch_execute(&format!(
            "CREATE EXTENSION IF NOT EXISTS pg_trgm;
             GRANT CREATE, CONNECT ON DATABASE {db} TO {OWNER_ROLE};
             GRANT CONNECT ON DATABASE {db} TO {WRITER_ROLE}, {READER_ROLE};",
            db = quote_ident(&db)
        ))
        .await
        .context("creating the pg_trgm extension and database grants (needs a superuser or the database owner; on Debian install postgresql-contrib)")?;
    client
        .batch_execute(&format!(
            "SET ROLE {OWNER_ROLE};
             CREATE SCHEMA IF NOT EXISTS quarry;
             CREATE TABLE IF NOT EXISTS quarry.schema_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 checksum   text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             );"
        ))
        .await
        .context("creating quarry.schema_migrations")?;

    let mut report = MigrateReport::default();
    let applied = client
        .query(
            "SELECT version, checksum FROM quarry.schema_migrations",
            &[],
        )
        .await?;
    for (version, name, sql) in MIGRATIONS {
        let sum = checksum(sql);
        if let Some(row) = applied.iter().find(|r| r.get::<_, i32>(0) == *version) {
            let recorded: String = row.get(1);
            if recorded != sum {
                bail!(
                    "migration {version:04}_{name} was changed after it was applied (checksum {recorded} in the database, {sum} now); add a new migration instead of editing an applied one"
                );
            }
            report.already += 1;
            continue;
        }
        let tx = client.transaction().await?;
        tx.batch_execute(sql)
            .await
            .with_context(|| format!("applying migration {version:04}_{name}"))?;
        tx.execute(
            "INSERT INTO quarry.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[version, name, &sum],
        )
        .await?;
        tx.commit().await?;
        report.applied.push(format!("{version:04}_{name}"));
    }
    client
        .batch_execute(ROLES_SQL)
        .await
        .context("applying role grants")?;
    client.batch_execute("RESET ROLE").await?;
    client
        .batch_execute(CONFINE_SQL)
        .await
        .context("confining the reader role (sql/confine.sql)")?;
    Ok(report)
}

/// Creates the three roles when missing. Roles are cluster-wide, so concurrent
/// creation (tests creating many databases) is tolerated.
async fn ensure_roles(client: &Client, passwords: &RolePasswords) -> Result<()> {
    let reader_pw = passwords.reader.clone();
    let writer_pw = passwords.writer.clone();
    for (role, login, pw) in [
        (OWNER_ROLE, false, None),
        (WRITER_ROLE, true, writer_pw),
        (READER_ROLE, true, reader_pw),
    ] {
        let exists = client
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
            .await?
            .is_some();
        if !exists {
            let sql = format!(
                "DO $$ BEGIN CREATE ROLE {role} {}; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
                if login { "LOGIN" } else { "NOLOGIN" }
            );
            client.batch_execute(&sql).await.with_context(|| {
                format!("creating role {role} (the DATABASE_URL user needs CREATEROLE, or create it beforehand)")
            })?;
        }
        if let Some(pw) = pw {
            // The password is sent as a literal inside ALTER ROLE, which takes no parameters.
            client
                .batch_execute(&format!(
                    "ALTER ROLE {role} PASSWORD {}",
                    quote_literal(&pw)
                ))
                .await
                .with_context(|| format!("setting the password of {role}"))?;
        }
    }
    let me: String = client.query_one("SELECT current_user", &[]).await?.get(0);
    let member: bool = client
        .query_one(
            "SELECT pg_has_role(current_user, $1, 'MEMBER')",
            &[&OWNER_ROLE],
        )
        .await?
        .get(0);
    if !member {
        client
            .batch_execute(&format!("GRANT {OWNER_ROLE} TO {}", quote_ident(&me)))
            .await
            .with_context(|| format!("granting {OWNER_ROLE} to {me}"))?;
    }
    // Analytics limits that hold even if a caller forgets them (set once).
    let configured = client
        .query_opt(
            "SELECT 1 FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
             WHERE r.rolname = $1 AND s.setdatabase = 0
               AND 'default_transaction_read_only=on' = ANY (s.setconfig)",
            &[&READER_ROLE],
        )
        .await?
        .is_some();
    if configured {
        return Ok(());
    }
    client
        .batch_execute(&format!(
            "ALTER ROLE {READER_ROLE} SET statement_timeout = '60s';
             ALTER ROLE {READER_ROLE} SET default_transaction_read_only = on;
             ALTER ROLE {READER_ROLE} SET idle_in_transaction_session_timeout = '60s';"
        ))
        .await
        .context("setting reader role defaults")?;
    Ok(())
}

/// Quotes an identifier for DDL.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// sha256 of the migration text: detects edits to applied migrations.
fn checksum(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}
