//! Companies across source systems: links made by the declared matching rules,
//! people's decisions, the clusters (companies) and their golden rows.
//!
//! Everything here runs inside a transaction that holds the link lock, so
//! links, decisions and companies always agree at commit:
//! - when the company queue is resolved ([`resolve_queue`], [`resolve_queue_in`]):
//!   a file that writes organizations queues them in its own transaction
//!   ([`queue_stored_organizations`], [`queue_new_organizations`]) with the
//!   block values they had before it (only inserting rows, so it never waits
//!   for a resolution); resolving recomputes the links of those
//!   values and of the values the organizations have now by every rule, then
//!   re-clusters the companies of every organization whose links or values
//!   changed (and of the other members of their companies). A file loaded on
//!   its own resolves the queue in its transaction; `quarry ingest` resolves it
//!   once after all of its files, which then load in parallel;
//! - when different rules are registered ([`register`]): every link and
//!   company is recomputed;
//! - when a person decides ([`decide`], [`split`]).
//!
//! Company ids are stable: when clusters change, each old company goes to the
//! new cluster holding most of its members (ties: the smallest organization
//! id's cluster), and each new cluster keeps the old company contributing most
//! members (ties: the smaller company id); clusters left without get a new id.
//! So a company keeps its id when it gains members, when it loses fewer than
//! half of them, and when it absorbs a smaller company.
//!
//! The SQL is generated from the checked rules, but only from closed
//! vocabularies (fields, block keys, kinds, golden fields); every value from
//! the rules file (attribute keys, source names, thresholds, scores) is a bind
//! parameter.

use anyhow::{bail, Context, Result};
use quarry_core::companies::{
    BlockKey, CompanyRules, GoldenField, MatchField, MatchRule, RuleKind,
};
use serde::Serialize;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Transaction};

/// Advisory lock class held, per transaction, while links or companies change
/// (shared with the ingest's link refresh).
pub(crate) const LINK_LOCK_CLASS: i32 = 0x5155_4102;

/// The rules a database with none registered uses: the shipped
/// `mappings/companies.yaml`.
pub fn builtin_rules() -> Result<CompanyRules> {
    let (rules, d) = CompanyRules::check(
        "mappings/companies.yaml",
        include_str!("../../../mappings/companies.yaml"),
    );
    match rules {
        Some(r) if d.is_empty() => Ok(r),
        _ => bail!("the shipped company rules do not check: {d:?}"),
    }
}

/// The rules the links and companies were computed with, if any were registered.
pub async fn stored_rules(tx: &Transaction<'_>) -> Result<Option<CompanyRules>> {
    let row = tx
        .query_opt("SELECT rules FROM quarry.company_rules", &[])
        .await
        .context("reading the registered company rules")?;
    row.map(|r| {
        serde_json::from_value(r.get::<_, serde_json::Value>(0))
            .context("the registered company rules do not parse; register them again with `quarry ingest` or `quarry companies rebuild`")
    })
    .transpose()
}

/// What registering rules did.
#[derive(Debug, Clone, Serialize)]
pub struct Rebuilt {
    /// Whether the rules differed from the registered ones (and so everything
    /// was recomputed).
    pub changed: bool,
    /// Links after the rebuild (0 when nothing changed).
    pub links: i64,
    /// Companies after the rebuild (0 when nothing changed).
    pub companies: i64,
}

/// Registers `rules`; when they differ from the registered ones (or `force`),
/// every automatic link and every company is recomputed in one transaction and
/// the data version moves.
pub async fn register(client: &mut Client, rules: &CompanyRules, force: bool) -> Result<Rebuilt> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&LINK_LOCK_CLASS])
        .await
        .context("waiting for other loads' link refresh")?;
    let fingerprint = rules.fingerprint();
    let stored: Option<String> = tx
        .query_opt("SELECT fingerprint FROM quarry.company_rules", &[])
        .await?
        .map(|r| r.get(0));
    if !force && stored.as_deref() == Some(fingerprint.as_str()) {
        tx.commit().await?;
        return Ok(Rebuilt {
            changed: false,
            links: 0,
            companies: 0,
        });
    }
    rebuild_in(&tx, rules).await?;
    tx.execute(
        "UPDATE quarry.data_version SET version = version + 1, changed_at = now()",
        &[],
    )
    .await?;
    let links: i64 = tx
        .query_one("SELECT count(*) FROM canonical.entity_links", &[])
        .await?
        .get(0);
    let companies: i64 = tx
        .query_one("SELECT count(*) FROM canonical.companies", &[])
        .await?
        .get(0);
    tx.commit()
        .await
        .context("committing the rebuilt companies")?;
    Ok(Rebuilt {
        changed: true,
        links,
        companies,
    })
}

/// Stores `rules` and recomputes every link and company (caller holds the link lock).
async fn rebuild_in(tx: &Transaction<'_>, rules: &CompanyRules) -> Result<()> {
    // Everything is recomputed, so nothing seen queued stays (the entries of
    // files committing later are not seen, and stay for the next resolution).
    tx.batch_execute(
        "DELETE FROM quarry.company_queue;
         DELETE FROM quarry.company_queue_values;",
    )
    .await
    .context("emptying the company queue")?;
    let json = serde_json::to_value(rules)?;
    tx.execute(
        "INSERT INTO quarry.company_rules (id, version, fingerprint, rules) VALUES (true, $1, $2, $3)
         ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, fingerprint = EXCLUDED.fingerprint,
           rules = EXCLUDED.rules, applied_at = now()",
        &[&rules.version, &rules.fingerprint(), &json],
    )
    .await
    .context("recording the company rules")?;
    let names: Vec<&str> = rules.rules.iter().map(|r| r.name.as_str()).collect();
    tx.execute(
        "DELETE FROM canonical.entity_links WHERE method <> 'manual' AND method <> ALL($1::text[])",
        &[&names],
    )
    .await
    .context("removing the links of rules that no longer exist")?;
    tx.batch_execute(
        "CREATE TEMP TABLE IF NOT EXISTS link_changes (id bigint) ON COMMIT DROP;
         TRUNCATE link_changes",
    )
    .await?;
    for rule in &rules.rules {
        refresh_rule(tx, rules, rule, false).await?;
    }
    tx.batch_execute(
        "CREATE TEMP TABLE IF NOT EXISTS aff (id bigint PRIMARY KEY) ON COMMIT DROP;
         TRUNCATE aff;
         INSERT INTO aff SELECT id FROM canonical.organizations;",
    )
    .await?;
    recluster(tx, rules).await
}

/// Queues the organizations a file writes that were stored before it (their
/// rows before the file in `touched_orgs`) for company resolution, with the
/// block values they had, in the file's transaction (`file_id` is its ledger
/// entry). Returns the fingerprint of the rules it saw, for
/// [`queue_new_organizations`].
///
/// The file only inserts queue rows: it never locks nor waits for a row a
/// resolution running meanwhile holds, and that resolution deletes only the
/// rows it saw, so this file's stay for the next one (see migration 0010).
pub(crate) async fn queue_stored_organizations(
    tx: &Transaction<'_>,
    file_id: i64,
) -> Result<Option<String>> {
    let rules = stored_rules(tx).await?;
    let fingerprint = rules.as_ref().map(CompanyRules::fingerprint);
    tx.execute(
        "INSERT INTO quarry.company_queue (organization_id, ingest_file_id, rules_fingerprint)
         SELECT id, $1, $2 FROM touched_orgs",
        &[&file_id, &fingerprint],
    )
    .await
    .context("queueing the file's stored organizations for company resolution")?;
    // Without registered rules the next resolution recomputes everything.
    let Some(rules) = rules else {
        return Ok(None);
    };
    for rule in &rules.rules {
        let attr: Option<&str> = match &rule.field {
            MatchField::Attribute(k) => Some(k.as_str()),
            _ => None,
        };
        tx.execute(
            &format!(
                "INSERT INTO quarry.company_queue_values (rule, value, ingest_file_id)
                 SELECT DISTINCT $1::text, v, $3::bigint
                 FROM (SELECT {lookup} AS v, $2::text AS attr FROM touched_orgs o) x
                 WHERE v IS NOT NULL",
                lookup = lookup_expr(rule)
            ),
            &[&rule.name, &attr, &file_id],
        )
        .await
        .with_context(|| format!("queueing the block values of rule `{}`", rule.name))?;
    }
    Ok(fingerprint)
}

/// Queues the organizations a file of `source` inserted (after its upserts;
/// see [`queue_stored_organizations`]).
pub(crate) async fn queue_new_organizations(
    tx: &Transaction<'_>,
    source: &str,
    file_id: i64,
    fingerprint: Option<&str>,
) -> Result<()> {
    tx.execute(
        "INSERT INTO quarry.company_queue (organization_id, ingest_file_id, rules_fingerprint)
         SELECT o.id, $2, $3 FROM canonical.organizations o
         WHERE o.source_system = $1 AND o.source_id IN (SELECT source_id FROM stg_organizations)
           AND NOT EXISTS (SELECT 1 FROM touched_orgs t WHERE t.id = o.id)",
        &[&source, &file_id, &fingerprint],
    )
    .await
    .context("queueing the file's new organizations for company resolution")?;
    Ok(())
}

/// What a company resolution did.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Resolved {
    /// Queued organizations whose links and company were recomputed.
    pub organizations: u64,
}

/// Resolves the whole company queue in its own transaction (see
/// [`resolve_queue_in`]); the data version moves when anything was queued.
/// `quarry ingest` calls it once at the end of a run (which also resolves what
/// an earlier run that stopped left), `quarry companies resolve` on demand.
pub async fn resolve_queue(client: &mut Client) -> Result<Resolved> {
    // Nothing queued: no transaction, no lock.
    let queued: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM quarry.company_queue)
                 OR EXISTS (SELECT 1 FROM quarry.company_queue_values)",
            &[],
        )
        .await
        .context("reading the company queue")?
        .get(0);
    if !queued {
        return Ok(Resolved::default());
    }
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&LINK_LOCK_CLASS])
        .await
        .context("waiting for other loads' link refresh")?;
    let done = resolve_queue_in(&tx, None).await?;
    tx.execute(
        "UPDATE quarry.data_version SET version = version + 1, changed_at = now()",
        &[],
    )
    .await?;
    tx.commit()
        .await
        .context("committing the resolved companies")?;
    Ok(done)
}

/// Recomputes, in `tx` (which holds the link lock), the links of every block
/// value the queued organizations touched (the values they had before the
/// files that queued them and the ones they have now) by every rule, then the
/// companies of every organization whose links or values changed (and of the
/// other members of their companies), and removes the entries it took: those
/// of file `only_file`, or all it sees. Entries queued under other rules than
/// the registered ones (or none) recompute everything, with the registered
/// rules or, when there are none, the built-in ones.
pub(crate) async fn resolve_queue_in(
    tx: &Transaction<'_>,
    only_file: Option<i64>,
) -> Result<Resolved> {
    let rules = stored_rules(tx).await?;
    let fingerprint = rules.as_ref().map(CompanyRules::fingerprint);
    tx.batch_execute(
        "CREATE TEMP TABLE IF NOT EXISTS pend_taken (id bigint, fingerprint text) ON COMMIT DROP;
         CREATE TEMP TABLE IF NOT EXISTS pend_orgs (id bigint PRIMARY KEY) ON COMMIT DROP;
         CREATE TEMP TABLE IF NOT EXISTS pend_values (rule text, v text) ON COMMIT DROP;
         TRUNCATE pend_taken, pend_orgs, pend_values;",
    )
    .await?;
    tx.execute(
        "WITH d AS (DELETE FROM quarry.company_queue
                    WHERE $1::bigint IS NULL OR ingest_file_id = $1
                    RETURNING organization_id, rules_fingerprint)
         INSERT INTO pend_taken SELECT organization_id, rules_fingerprint FROM d",
        &[&only_file],
    )
    .await
    .context("taking the company queue")?;
    tx.execute(
        "WITH d AS (DELETE FROM quarry.company_queue_values
                    WHERE $1::bigint IS NULL OR ingest_file_id = $1
                    RETURNING rule, value)
         INSERT INTO pend_values SELECT DISTINCT rule, value FROM d",
        &[&only_file],
    )
    .await
    .context("taking the company queue's values")?;
    let queued: i64 = tx
        .query_one("SELECT count(DISTINCT id) FROM pend_taken", &[])
        .await?
        .get(0);
    let other_rules: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pend_taken WHERE fingerprint IS DISTINCT FROM $1)",
            &[&fingerprint],
        )
        .await?
        .get(0);
    let organizations = u64::try_from(queued).unwrap_or(0);
    let rules = match rules {
        Some(r) if !other_rules => r,
        Some(r) => {
            rebuild_in(tx, &r).await?;
            return Ok(Resolved { organizations });
        }
        None => {
            rebuild_in(tx, &builtin_rules()?).await?;
            return Ok(Resolved { organizations });
        }
    };
    // Ids of organizations removed since they were queued are skipped.
    tx.batch_execute(
        "INSERT INTO pend_orgs SELECT DISTINCT p.id FROM pend_taken p
         WHERE EXISTS (SELECT 1 FROM canonical.organizations o WHERE o.id = p.id);
         ANALYZE pend_orgs;
         ANALYZE pend_values;
         CREATE TEMP TABLE IF NOT EXISTS link_changes (id bigint) ON COMMIT DROP;
         TRUNCATE link_changes;",
    )
    .await
    .context("collecting the queued organizations")?;
    for rule in &rules.rules {
        refresh_rule(tx, &rules, rule, true).await?;
    }
    tx.batch_execute(
        "CREATE TEMP TABLE IF NOT EXISTS aff (id bigint PRIMARY KEY) ON COMMIT DROP;
         TRUNCATE aff;
         INSERT INTO aff SELECT id FROM pend_orgs UNION SELECT id FROM link_changes;",
    )
    .await
    .context("noting the organizations whose company may change")?;
    recluster(tx, &rules).await?;
    Ok(Resolved { organizations })
}

/// The first block element of a rule (the compared value for an equal rule,
/// the first blocking key for a similar one) for organization alias `o`: what
/// selects a file's candidates, by expression index lookups.
fn lookup_expr(rule: &MatchRule) -> &'static str {
    match rule.kind {
        RuleKind::Equal => field_expr(&rule.field),
        RuleKind::Similar => rule
            .block_by
            .iter()
            .chain(&rule.same)
            .next()
            .map_or_else(|| field_expr(&rule.field), |b| block_expr(*b)),
    }
}

/// The SQL expression of a rule's compared value for organization alias `o`
/// (`$2` is the attribute key), as the expression indexes of migration 0009
/// spell it (so a file's values are index lookups); blank counts as absent.
fn field_expr(f: &MatchField) -> &'static str {
    match f {
        MatchField::Name => "o.name_key",
        MatchField::VatId => "upper(regexp_replace(o.vat_id, '[^[:alnum:]]+', '', 'g'))",
        MatchField::EmailDomain => "o.email_domain",
        MatchField::Website => {
            "regexp_replace(lower(btrim(o.website)), '^([a-z]+://)?(www\\.)?([^/:?#]*).*$', '\\3')"
        }
        MatchField::Phone => "regexp_replace(o.phone, '[^0-9]', '', 'g')",
        MatchField::Attribute(_) => "lower(btrim(o.attributes ->> $2::text))",
    }
}

/// The SQL expression of a blocking key for organization alias `o`.
fn block_expr(b: BlockKey) -> &'static str {
    match b {
        BlockKey::CountryCode => "o.country_code::text",
        BlockKey::NameFirstWord => "split_part(o.name_key, ' ', 1)",
        BlockKey::NamePrefix3 => "left(replace(o.name_key, ' ', ''), 3)",
        BlockKey::EmailDomain => "o.email_domain",
        BlockKey::City => "lower(btrim(o.city))",
    }
}

/// Recomputes the links of one rule: all of them (not `scoped`), or those of
/// the block values the queued organizations touched (`pend_orgs` and
/// `pend_values`, see [`resolve_queue_in`]). Endpoints of links added, changed
/// or removed go to `link_changes`.
async fn refresh_rule(
    tx: &Transaction<'_>,
    rules: &CompanyRules,
    rule: &MatchRule,
    scoped: bool,
) -> Result<()> {
    let bare = field_expr(&rule.field);
    let key = format!("nullif({bare}, '')");
    // The block: the value itself and the `same` keys for an equal rule; the
    // block_by keys for a similar one.
    let mut block: Vec<&str> = match rule.kind {
        RuleKind::Equal => vec![bare],
        RuleKind::Similar => rule.block_by.iter().map(|b| block_expr(*b)).collect(),
    };
    block.extend(rule.same.iter().map(|b| block_expr(*b)));
    let block_sql = block
        .iter()
        .map(|e| format!("nullif({e}, '')"))
        .collect::<Vec<_>>()
        .join(", ");
    // The first block element selects the candidates of the queued values (the
    // compared value, or the first blocking key): expression indexes make it a lookup.
    let lookup = lookup_expr(rule);
    let kinds: Vec<String> = rule
        .kinds
        .iter()
        .map(|k| format!("'{}'", k.as_str()))
        .collect();
    let kinds = kinds.join(", ");
    let touched = if scoped {
        format!(
            "touched AS MATERIALIZED (
               SELECT v FROM pend_values WHERE rule = $9::text
               UNION SELECT {lookup} FROM canonical.organizations o
                WHERE o.id IN (SELECT id FROM pend_orgs)),"
        )
    } else {
        String::new()
    };
    let touched_filter = if scoped {
        format!("AND {lookup} IN (SELECT v FROM touched WHERE v IS NOT NULL)")
    } else {
        String::new()
    };
    let (pair_cond, score, reason) = match rule.kind {
        RuleKind::Equal => (
            "true".to_string(),
            "$6::numeric".to_string(),
            format!(
                "format('%s %s equal', {label}, a.k){same}",
                label = "$7::text",
                same = if rule.same.is_empty() {
                    String::new()
                } else {
                    " || ' (and ' || array_to_string(a.b[2:], ', ') || ')'".to_string()
                }
            ),
        ),
        RuleKind::Similar => (
            "similarity(a.k, b.k) >= $4::float8".to_string(),
            "round($6::numeric * similarity(a.k, b.k)::numeric, 3)".to_string(),
            "format('%s %L ~ %L similar (%s) in block %s', $7::text, a.k, b.k, round(similarity(a.k, b.k)::numeric, 3), array_to_string(a.b, '/'))".to_string(),
        ),
    };
    let gate = match rule.field.link_key() {
        Some(_) => {
            "AND ($8::text = ANY(coalesce(ka.link_keys, '{}')) OR $8::text = ANY(coalesce(kb.link_keys, '{}')))"
        }
        None => "AND $8::text IS NULL",
    };
    let scope = if scoped {
        "AND (l.left_id IN (SELECT id FROM scope) OR l.right_id IN (SELECT id FROM scope))"
    } else {
        ""
    };
    let scope_cte = if scoped {
        "scope AS (SELECT id FROM rule_keyed UNION SELECT id FROM pend_orgs),"
    } else {
        ""
    };
    // Every statement names all ten parameters' types (in an unused CTE), so
    // each can be sent the same list whichever it uses.
    let p = "_p AS (SELECT $1::text, $2::text, $3::text[], $4::float8, $5::int, $6::text, $7::text, $8::text, $9::text, $10::text)";
    // 1. The organizations of the touched blocks, with their compared value and
    //    block (index lookups), then the candidates: blocks of 2 to max_group
    //    from more than one system. Both are analysed temp tables, so the pair
    //    join below is planned on real sizes.
    let keyed_sql = format!(
        "INSERT INTO rule_keyed (id, source_system, k, b)
         WITH {p}, {touched} keyed AS (
           SELECT o.id, o.source_system, {key} AS k, ARRAY[{block_sql}]::text[] AS b
           FROM canonical.organizations o
           WHERE o.kind IN ({kinds})
             AND ($3::text[] IS NULL OR o.source_system = ANY($3::text[]))
             {touched_filter})
         SELECT * FROM keyed"
    );
    let cands_sql = format!(
        "INSERT INTO rule_cands (id, source_system, k, b)
         WITH {p}, blocks AS (
           SELECT b FROM rule_keyed
           WHERE k IS NOT NULL AND array_position(b, NULL) IS NULL
           GROUP BY b HAVING count(*) BETWEEN 2 AND $5::int
              AND count(DISTINCT source_system) > 1)
         SELECT k.* FROM rule_keyed k JOIN blocks USING (b) WHERE k.k IS NOT NULL"
    );
    let sql = format!(
        "WITH {p},
         desired AS MATERIALIZED (
           SELECT a.id AS left_id, b.id AS right_id, {score} AS score, {reason} AS reason,
                  jsonb_build_object('rule', $9::text, 'values', jsonb_build_array(a.k, b.k), 'block', to_jsonb(a.b)) AS evidence
           FROM rule_cands a
           JOIN rule_cands b ON b.b = a.b AND b.id > a.id AND b.source_system <> a.source_system
           LEFT JOIN quarry.source_link_keys ka ON ka.source_system = a.source_system
           LEFT JOIN quarry.source_link_keys kb ON kb.source_system = b.source_system
           WHERE {pair_cond} {gate}
             AND NOT EXISTS (SELECT 1 FROM canonical.link_decisions d
                             WHERE d.left_id = a.id AND d.right_id = b.id AND d.decision = 'rejected')),
         {scope_cte}
         gone AS (
           DELETE FROM canonical.entity_links l
           WHERE l.method = $9::text {scope}
             AND NOT EXISTS (SELECT 1 FROM desired d WHERE d.left_id = l.left_id AND d.right_id = l.right_id)
           RETURNING l.left_id, l.right_id),
         put AS (
           INSERT INTO canonical.entity_links (left_id, right_id, method, score, evidence, reason, rules_version)
           SELECT left_id, right_id, $9::text, score, evidence, reason, $10::text FROM desired
           ON CONFLICT (left_id, right_id, method) DO UPDATE
             SET score = EXCLUDED.score, evidence = EXCLUDED.evidence, reason = EXCLUDED.reason,
                 rules_version = EXCLUDED.rules_version
           WHERE (entity_links.score, entity_links.evidence, entity_links.reason, entity_links.rules_version)
                 IS DISTINCT FROM (EXCLUDED.score, EXCLUDED.evidence, EXCLUDED.reason, EXCLUDED.rules_version)
           RETURNING left_id, right_id)
         INSERT INTO link_changes
         SELECT left_id FROM gone UNION SELECT right_id FROM gone
         UNION SELECT left_id FROM put UNION SELECT right_id FROM put"
    );
    let attr: Option<&str> = match &rule.field {
        MatchField::Attribute(k) => Some(k.as_str()),
        _ => None,
    };
    let min_similarity = rule.min_similarity.unwrap_or(1.0);
    let max_group = i32::try_from(rule.max_group).unwrap_or(i32::MAX);
    let score = rust_decimal_text(rule.score);
    let label = rule.field.label();
    let link_key = rule.field.link_key();
    let params: [&(dyn ToSql + Sync); 10] = [
        &"",
        &attr,
        &rule.sources,
        &min_similarity,
        &max_group,
        &score,
        &label,
        &link_key,
        &rule.name,
        &rules.version,
    ];
    // The score is bound as text and cast, so it is exact (numeric(4,3)).
    let sql = sql.replace("$6::numeric", "$6::text::numeric");
    tx.batch_execute(
        "CREATE TEMP TABLE IF NOT EXISTS rule_keyed (id bigint, source_system text, k text, b text[]) ON COMMIT DROP;
         CREATE TEMP TABLE IF NOT EXISTS rule_cands (id bigint, source_system text, k text, b text[]) ON COMMIT DROP;
         TRUNCATE rule_keyed, rule_cands;",
    )
    .await?;
    let what = || format!("recomputing the links of rule `{}`", rule.name);
    tx.execute(&keyed_sql, &params).await.with_context(what)?;
    tx.batch_execute("ANALYZE rule_keyed").await?;
    tx.execute(&cands_sql, &params).await.with_context(what)?;
    tx.batch_execute("ANALYZE rule_cands").await?;
    tx.execute(&sql, &params).await.with_context(what)?;
    Ok(())
}

/// A score as decimal text (the rules' scores have at most three decimals that matter).
fn rust_decimal_text(v: f64) -> String {
    format!("{:.3}", v.clamp(0.0, 1.0))
}

/// Re-clusters the organizations in temp table `aff` and every other member of
/// their companies, then derives the golden rows of the companies involved.
async fn recluster(tx: &Transaction<'_>, rules: &CompanyRules) -> Result<()> {
    let auto = rust_decimal_text(rules.auto_accept);
    tx.batch_execute(
        "DROP TABLE IF EXISTS s_orgs, s_edges, comp, overlap, claim, assigned, new_members;
         ANALYZE aff;
         CREATE TEMP TABLE s_orgs ON COMMIT DROP AS
           SELECT x.id, m.company_id AS old_company
           FROM (SELECT a.id FROM aff a
                 UNION
                 SELECT m2.organization_id FROM aff a
                 JOIN canonical.company_members m1 ON m1.organization_id = a.id
                 JOIN canonical.company_members m2 ON m2.company_id = m1.company_id) x
           LEFT JOIN canonical.company_members m ON m.organization_id = x.id;
         CREATE UNIQUE INDEX ON s_orgs (id);
         ANALYZE s_orgs;",
    )
    .await
    .context("collecting the organizations to re-cluster")?;
    tx.execute(
        "CREATE TEMP TABLE s_edges ON COMMIT DROP AS
           SELECT l.left_id AS a, l.right_id AS b FROM canonical.entity_links l
           JOIN s_orgs sa ON sa.id = l.left_id JOIN s_orgs sb ON sb.id = l.right_id
           WHERE (l.score >= $1::text::numeric OR l.method = 'manual')
             AND NOT EXISTS (SELECT 1 FROM canonical.link_decisions d
                             WHERE d.left_id = l.left_id AND d.right_id = l.right_id AND d.decision = 'rejected')
           UNION
           SELECT d.left_id, d.right_id FROM canonical.link_decisions d
           JOIN s_orgs sa ON sa.id = d.left_id JOIN s_orgs sb ON sb.id = d.right_id
           WHERE d.decision = 'confirmed'",
        &[&auto],
    )
    .await
    .context("collecting the accepted links")?;
    tx.batch_execute(
        "ANALYZE s_edges;
         CREATE TEMP TABLE comp ON COMMIT DROP AS SELECT id, id AS label FROM s_orgs;
         CREATE UNIQUE INDEX ON comp (id);
         ANALYZE comp;",
    )
    .await?;
    // Connected components by label propagation: each organization takes the
    // smallest label among its neighbours until nothing changes (as many rounds
    // as the longest shortest path in a company, a handful in practice).
    for round in 0.. {
        let changed = tx
            .execute(
                "UPDATE comp c SET label = n.label
                 FROM (SELECT id, min(label) AS label FROM (
                         SELECT e.a AS id, c2.label FROM s_edges e JOIN comp c2 ON c2.id = e.b
                         UNION ALL
                         SELECT e.b, c1.label FROM s_edges e JOIN comp c1 ON c1.id = e.a) x
                       GROUP BY id) n
                 WHERE n.id = c.id AND n.label < c.label",
                &[],
            )
            .await
            .context("joining linked organizations into companies")?;
        if changed == 0 {
            break;
        }
        if round > 100_000 {
            bail!("companies did not converge after {round} rounds");
        }
    }
    // Stable ids (see the module's documentation).
    tx.batch_execute(
        "CREATE TEMP TABLE overlap ON COMMIT DROP AS
           SELECT c.label, s.old_company, count(*) AS n, min(c.id) AS first_org
           FROM comp c JOIN s_orgs s USING (id)
           WHERE s.old_company IS NOT NULL GROUP BY 1, 2;
         CREATE TEMP TABLE claim ON COMMIT DROP AS
           SELECT DISTINCT ON (old_company) old_company, label, n FROM overlap
           ORDER BY old_company, n DESC, first_org;
         CREATE TEMP TABLE assigned ON COMMIT DROP AS
           SELECT DISTINCT ON (label) label, old_company AS company_id FROM claim
           ORDER BY label, n DESC, old_company;
         INSERT INTO assigned
           SELECT l.label, nextval('canonical.companies_id_seq')
           FROM (SELECT DISTINCT label FROM comp) l
           WHERE NOT EXISTS (SELECT 1 FROM assigned a WHERE a.label = l.label)
           ORDER BY l.label;
         CREATE TEMP TABLE new_members ON COMMIT DROP AS
           SELECT c.id AS organization_id, a.company_id FROM comp c JOIN assigned a USING (label);
         CREATE INDEX ON new_members (company_id);
         ANALYZE new_members;",
    )
    .await
    .context("keeping company ids stable")?;
    golden(tx, rules).await?;
    tx.batch_execute(
        "INSERT INTO canonical.company_members (organization_id, company_id)
           SELECT organization_id, company_id FROM new_members
         ON CONFLICT (organization_id) DO UPDATE SET company_id = EXCLUDED.company_id, since = now()
         WHERE company_members.company_id <> EXCLUDED.company_id;
         DELETE FROM canonical.companies c
         WHERE c.id IN (SELECT old_company FROM s_orgs WHERE old_company IS NOT NULL)
           AND NOT EXISTS (SELECT 1 FROM assigned a WHERE a.company_id = c.id);",
    )
    .await
    .context("recording the companies' members")?;
    Ok(())
}

/// Derives the golden rows of the companies in `new_members` by the declared
/// survivorship and upserts them. Most companies have one member, whose values
/// are the company's: those are written straight from the organization; only
/// companies with several members are aggregated (one ordered pick per field).
async fn golden(tx: &Transaction<'_>, rules: &CompanyRules) -> Result<()> {
    let cols: Vec<&str> = GoldenField::ALL.iter().map(|f| f.column()).collect();
    let present = |col: &str| format!("o.{col} IS NOT NULL AND btrim(o.{col}::text) <> ''");
    let source = "jsonb_build_object('organization_id', o.id, 'source_system', o.source_system, 'source_id', o.source_id)";
    let mut picks = Vec::new();
    let mut prefer: Vec<Vec<String>> = Vec::new();
    for (i, f) in GoldenField::ALL.iter().enumerate() {
        let col = f.column();
        let s = rules.strategy(*f);
        prefer.push(s.prefer.clone());
        let recency = if s.most_recent {
            "coalesce(o.source_updated_at, o.updated_at) DESC, "
        } else {
            ""
        };
        let order = format!(
            "array_position(${n}::text[], o.source_system) NULLS LAST, {recency}o.id",
            n = i + 1
        );
        let cond = present(col);
        picks.push(format!(
            "(array_agg(o.{col} ORDER BY {order}) FILTER (WHERE {cond}))[1] AS {col},
             (array_agg(o.src ORDER BY {order}) FILTER (WHERE {cond}))[1] AS {col}_from"
        ));
    }
    let singles: Vec<String> = cols
        .iter()
        .map(|c| {
            let cond = present(c);
            format!("CASE WHEN {cond} THEN o.{c} END AS {c}, CASE WHEN {cond} THEN x.src END AS {c}_from")
        })
        .collect();
    let upsert = format!(
        "INSERT INTO canonical.companies AS c (id, kind, {cols}, value_sources, member_count, source_systems)
         SELECT g.company_id, g.kind, coalesce(g.name, g.any_name), {rest},
                jsonb_strip_nulls(jsonb_build_object({sources})), g.member_count, g.source_systems
         FROM g
         ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, {updates},
           value_sources = EXCLUDED.value_sources, member_count = EXCLUDED.member_count,
           source_systems = EXCLUDED.source_systems, updated_at = now()
         WHERE (c.kind, {old_cols}, c.value_sources, c.member_count, c.source_systems)
               IS DISTINCT FROM (EXCLUDED.kind, {new_cols}, EXCLUDED.value_sources, EXCLUDED.member_count, EXCLUDED.source_systems)",
        cols = cols.join(", "),
        rest = cols[1..].iter().map(|c| format!("g.{c}")).collect::<Vec<_>>().join(", "),
        sources = cols.iter().map(|c| format!("'{c}', g.{c}_from")).collect::<Vec<_>>().join(", "),
        updates = cols.iter().map(|c| format!("{c} = EXCLUDED.{c}")).collect::<Vec<_>>().join(", "),
        old_cols = cols.iter().map(|c| format!("c.{c}")).collect::<Vec<_>>().join(", "),
        new_cols = cols.iter().map(|c| format!("EXCLUDED.{c}")).collect::<Vec<_>>().join(", "),
    );
    tx.batch_execute(
        "DROP TABLE IF EXISTS multi;
         CREATE TEMP TABLE multi ON COMMIT DROP AS
           SELECT company_id FROM new_members GROUP BY company_id HAVING count(*) > 1;
         CREATE UNIQUE INDEX ON multi (company_id);
         ANALYZE multi;",
    )
    .await
    .context("finding the companies with several members")?;
    let single_sql = format!(
        "WITH g AS (
           SELECT n.company_id, o.kind, 1 AS member_count, ARRAY[o.source_system] AS source_systems,
                  o.name AS any_name, {singles}
           FROM new_members n JOIN canonical.organizations o ON o.id = n.organization_id
           CROSS JOIN LATERAL (SELECT {source} AS src) x
           WHERE NOT EXISTS (SELECT 1 FROM multi m WHERE m.company_id = n.company_id))
         {upsert}",
        singles = singles.join(",\n")
    );
    tx.execute(&single_sql, &[])
        .await
        .context("deriving the golden rows of one-member companies")?;
    let multi_sql = format!(
        "WITH g AS (
           SELECT o.company_id,
                  CASE WHEN bool_or(o.kind = 'company') THEN 'company' ELSE 'person' END AS kind,
                  count(*)::int AS member_count,
                  array_agg(DISTINCT o.source_system ORDER BY o.source_system) AS source_systems,
                  (array_agg(o.name ORDER BY o.id))[1] AS any_name,
                  {picks}
           FROM (SELECT n.company_id, o.*, {source} AS src
                 FROM new_members n JOIN canonical.organizations o ON o.id = n.organization_id
                 WHERE n.company_id IN (SELECT company_id FROM multi)
                 -- OFFSET 0 keeps the subquery: each member's source object is
                 -- built once, not once per field that may pick it (at 1M
                 -- records this statement took 3.8 s instead of 4.7-5.3 s).
                 OFFSET 0) o
           GROUP BY o.company_id)
         {upsert}",
        picks = picks.join(",\n"),
    );
    let params: Vec<&(dyn ToSql + Sync)> =
        prefer.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    tx.execute(&multi_sql, &params)
        .await
        .context("deriving the golden rows of companies with several members")?;
    Ok(())
}

// ---------------------------------------------------------------------------
// People's decisions
// ---------------------------------------------------------------------------

/// A link or a decided pair, as `quarry links list` and the admin API show it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct LinkRow {
    /// organizations.id of one side (the smaller).
    pub left_id: i64,
    /// Its source system and key.
    pub left: String,
    /// Its name.
    pub left_name: String,
    /// organizations.id of the other side (the larger).
    pub right_id: i64,
    /// Its source system and key.
    pub right: String,
    /// Its name.
    pub right_name: String,
    /// The rules (and `manual`) that link the pair, best score first.
    pub methods: Vec<String>,
    /// The best score of the pair's links (1 for a confirmed pair without one).
    pub score: f64,
    /// Why, per link.
    pub reasons: Vec<String>,
    /// `accepted` (joins the company), `proposed` (waits for review),
    /// `confirmed` or `rejected` (a person decided).
    pub status: String,
    /// Who decided and when, for decided pairs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    /// The company of the left side (both sides, unless rejected or proposed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub company_id: Option<i64>,
}

/// Which pairs to list.
#[derive(Debug, Clone, Default)]
pub struct LinkFilter {
    /// Only pairs with this status.
    pub status: Option<String>,
    /// Only pairs made by this rule.
    pub rule: Option<String>,
    /// Only pairs one side of which is this organization.
    pub organization: Option<i64>,
    /// Only pairs within (or, for proposed and rejected ones, touching) this company.
    pub company: Option<i64>,
    /// Most rows (default 100).
    pub limit: i64,
}

/// The statuses a pair can have.
pub const STATUSES: [&str; 4] = ["accepted", "proposed", "confirmed", "rejected"];

/// Lists links and decided pairs, proposals first by score, then the rest.
pub async fn list(client: &Client, filter: &LinkFilter) -> Result<Vec<LinkRow>> {
    let auto = {
        let row = client
            .query_opt(
                "SELECT auto_accept::text FROM quarry_ops.company_rules",
                &[],
            )
            .await
            .context("reading the registered company rules")?;
        row.and_then(|r| r.get::<_, Option<String>>(0))
            .unwrap_or_else(|| "0.9".into())
    };
    let limit = if filter.limit <= 0 {
        100
    } else {
        filter.limit.min(10_000)
    };
    let rows = client
        .query(
            "WITH pairs AS (
               SELECT left_id, right_id FROM canonical.entity_links
               UNION SELECT left_id, right_id FROM canonical.link_decisions),
             p AS (
               SELECT p.left_id, p.right_id,
                      coalesce(array_agg(l.method ORDER BY l.score DESC, l.method) FILTER (WHERE l.method IS NOT NULL), '{}') AS methods,
                      coalesce(max(l.score), 1)::float8 AS score,
                      coalesce(array_agg(coalesce(l.reason, l.evidence::text) ORDER BY l.score DESC, l.method) FILTER (WHERE l.method IS NOT NULL), '{}') AS reasons,
                      bool_or(l.score >= $1::text::numeric OR l.method = 'manual') AS accepted
               FROM pairs p LEFT JOIN canonical.entity_links l USING (left_id, right_id)
               GROUP BY 1, 2),
             s AS (
               SELECT p.*, d.decided_by, d.decided_at,
                      CASE WHEN d.decision IS NOT NULL THEN d.decision
                           WHEN p.accepted THEN 'accepted' ELSE 'proposed' END AS status
               FROM p LEFT JOIN canonical.link_decisions d USING (left_id, right_id))
             SELECT s.left_id, a.source_system || ':' || a.source_id, a.name,
                    s.right_id, b.source_system || ':' || b.source_id, b.name,
                    s.methods, s.score, s.reasons, s.status, s.decided_by,
                    to_char(s.decided_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                    ma.company_id
             FROM s
             JOIN canonical.organizations a ON a.id = s.left_id
             JOIN canonical.organizations b ON b.id = s.right_id
             LEFT JOIN canonical.company_members ma ON ma.organization_id = s.left_id
             LEFT JOIN canonical.company_members mb ON mb.organization_id = s.right_id
             WHERE ($2::text IS NULL OR s.status = $2)
               AND ($3::text IS NULL OR $3 = ANY(s.methods))
               AND ($4::bigint IS NULL OR $4 IN (s.left_id, s.right_id))
               AND ($5::bigint IS NULL OR $5 IN (ma.company_id, mb.company_id))
             ORDER BY (s.status = 'proposed') DESC, s.score DESC, s.left_id, s.right_id
             LIMIT $6",
            &[
                &auto,
                &filter.status,
                &filter.rule,
                &filter.organization,
                &filter.company,
                &limit,
            ],
        )
        .await
        .context("listing links")?;
    Ok(rows
        .iter()
        .map(|r| LinkRow {
            left_id: r.get(0),
            left: r.get(1),
            left_name: r.get(2),
            right_id: r.get(3),
            right: r.get(4),
            right_name: r.get(5),
            methods: r.get(6),
            score: r.get(7),
            reasons: r.get(8),
            status: r.get(9),
            decided_by: r.get(10),
            decided_at: r.get(11),
            company_id: r.get(12),
        })
        .collect())
}

/// A decision about a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The two are one company.
    Confirm,
    /// The two are different companies; no rule links them again.
    Reject,
}

/// What a decision changed.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Decided {
    /// The pairs decided, as (smaller id, larger id).
    pub pairs: Vec<(i64, i64)>,
    /// The company of each organization involved after the decision.
    pub companies: Vec<(i64, i64)>,
}

/// Why a decision was refused.
#[derive(Debug, thiserror::Error)]
pub enum DecisionError {
    /// The request names something impossible (one organization twice).
    #[error("{0}")]
    Invalid(String),
    /// No organization has this id.
    #[error("no organization has id {0}; `quarry links list` and the entity_resolution operation show organizations' ids")]
    UnknownOrganization(i64),
    /// The request cannot apply to the current state (split of a lone organization).
    #[error("{0}")]
    Conflict(String),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] anyhow::Error),
}

impl From<tokio_postgres::Error> for DecisionError {
    fn from(e: tokio_postgres::Error) -> Self {
        DecisionError::Database(e.into())
    }
}

/// Records `decision` about organizations `a` and `b` (by `who`, with `note`),
/// re-clusters them and moves the data version. Unknown organizations and a
/// pair of one organization are refused with a message saying so.
pub async fn decide(
    client: &mut Client,
    a: i64,
    b: i64,
    decision: Decision,
    who: &str,
    note: Option<&str>,
) -> Result<Decided, DecisionError> {
    if a == b {
        return Err(DecisionError::Invalid(format!(
            "organization {a} cannot be linked with itself; name two different organizations"
        )));
    }
    let (left, right) = (a.min(b), a.max(b));
    let tx = client.transaction().await?;
    lock_and_check(&tx, &[left, right]).await?;
    record(&tx, left, right, decision, who, note).await?;
    let out = settle(&tx, &[left, right], vec![(left, right)]).await?;
    tx.commit().await.context("committing the decision")?;
    Ok(out)
}

/// Takes organization `org` out of its company: every pair between it and the
/// other members is rejected (so no rule joins them again), and it becomes a
/// company of its own (which keeps the old id when it was the larger part).
pub async fn split(
    client: &mut Client,
    org: i64,
    who: &str,
    note: Option<&str>,
) -> Result<Decided, DecisionError> {
    let tx = client.transaction().await?;
    lock_and_check(&tx, &[org]).await?;
    let others: Vec<i64> = tx
        .query(
            "SELECT m2.organization_id FROM canonical.company_members m1
             JOIN canonical.company_members m2 ON m2.company_id = m1.company_id
             WHERE m1.organization_id = $1 AND m2.organization_id <> $1 ORDER BY 1",
            &[&org],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if others.is_empty() {
        return Err(DecisionError::Conflict(format!(
            "organization {org} is alone in its company already; nothing to split"
        )));
    }
    let note = note.unwrap_or("split");
    let mut pairs = Vec::new();
    for o in &others {
        let (l, r) = (org.min(*o), org.max(*o));
        record(&tx, l, r, Decision::Reject, who, Some(note)).await?;
        pairs.push((l, r));
    }
    let mut ids = others;
    ids.push(org);
    let out = settle(&tx, &ids, pairs).await?;
    tx.commit().await.context("committing the split")?;
    Ok(out)
}

async fn lock_and_check(tx: &Transaction<'_>, ids: &[i64]) -> Result<(), DecisionError> {
    tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&LINK_LOCK_CLASS])
        .await
        .context("waiting for other loads' link refresh")?;
    let found: Vec<i64> = tx
        .query(
            "SELECT id FROM canonical.organizations WHERE id = ANY($1)",
            &[&ids],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if let Some(missing) = ids.iter().find(|i| !found.contains(i)) {
        return Err(DecisionError::UnknownOrganization(*missing));
    }
    if stored_rules(tx).await?.is_none() {
        rebuild_in(tx, &builtin_rules()?).await?;
    }
    Ok(())
}

async fn record(
    tx: &Transaction<'_>,
    left: i64,
    right: i64,
    decision: Decision,
    who: &str,
    note: Option<&str>,
) -> Result<()> {
    let word = match decision {
        Decision::Confirm => "confirmed",
        Decision::Reject => "rejected",
    };
    tx.execute(
        "INSERT INTO canonical.link_decisions (left_id, right_id, decision, decided_by, note)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (left_id, right_id) DO UPDATE SET decision = EXCLUDED.decision,
           decided_by = EXCLUDED.decided_by, decided_at = now(), note = EXCLUDED.note",
        &[&left, &right, &word, &who, &note],
    )
    .await
    .context("recording the decision")?;
    match decision {
        Decision::Confirm => {
            tx.execute(
                "INSERT INTO canonical.entity_links (left_id, right_id, method, score, evidence, reason)
                 VALUES ($1, $2, 'manual', 1, jsonb_build_object('decided_by', $3::text), 'confirmed by ' || $3::text)
                 ON CONFLICT (left_id, right_id, method) DO UPDATE SET evidence = EXCLUDED.evidence, reason = EXCLUDED.reason",
                &[&left, &right, &who],
            )
            .await
            .context("recording the confirmed link")?;
        }
        Decision::Reject => {
            tx.execute(
                "DELETE FROM canonical.entity_links WHERE left_id = $1 AND right_id = $2",
                &[&left, &right],
            )
            .await
            .context("removing the rejected pair's links")?;
        }
    }
    Ok(())
}

/// Re-clusters `ids` after a decision and moves the data version.
async fn settle(tx: &Transaction<'_>, ids: &[i64], pairs: Vec<(i64, i64)>) -> Result<Decided> {
    let rules = match stored_rules(tx).await? {
        Some(r) => r,
        None => builtin_rules()?,
    };
    tx.batch_execute(
        "CREATE TEMP TABLE IF NOT EXISTS aff (id bigint PRIMARY KEY) ON COMMIT DROP; TRUNCATE aff;",
    )
    .await?;
    tx.execute(
        "INSERT INTO aff SELECT DISTINCT unnest($1::bigint[])",
        &[&ids],
    )
    .await?;
    recluster(tx, &rules).await?;
    tx.execute(
        "UPDATE quarry.data_version SET version = version + 1, changed_at = now()",
        &[],
    )
    .await?;
    let companies = tx
        .query(
            "SELECT organization_id, company_id FROM canonical.company_members
             WHERE organization_id = ANY($1) ORDER BY 1",
            &[&ids],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Ok(Decided { pairs, companies })
}

// ---------------------------------------------------------------------------
// Looking at a company
// ---------------------------------------------------------------------------

/// The company of organization `org`.
pub async fn company_of(client: &Client, org: i64) -> Result<Option<i64>> {
    Ok(client
        .query_opt(
            "SELECT company_id FROM canonical.company_members WHERE organization_id = $1",
            &[&org],
        )
        .await?
        .map(|r| r.get(0)))
}

/// One company as a reviewer sees it: the golden row with where each value came
/// from, the members from each system, and the links between them (and the
/// proposals and rejections touching them).
pub async fn show(client: &Client, company: i64) -> Result<Option<serde_json::Value>> {
    let row = client
        .query_opt(
            "SELECT jsonb_build_object(
               'company', to_jsonb(c) - 'value_sources',
               'value_sources', c.value_sources,
               'members', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                              'organization_id', o.id, 'source_system', o.source_system, 'source_id', o.source_id,
                              'kind', o.kind, 'name', o.name, 'industry', o.industry, 'country_code', o.country_code,
                              'tier', o.tier, 'email_domain', o.email_domain, 'vat_id', o.vat_id,
                              'source_updated_at', o.source_updated_at, 'since', m.since)
                            ORDER BY o.source_system, o.source_id), '[]')
                           FROM canonical.company_members m JOIN canonical.organizations o ON o.id = m.organization_id
                           WHERE m.company_id = c.id))
             FROM canonical.companies c WHERE c.id = $1",
            &[&company],
        )
        .await
        .context("reading the company")?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mut v: serde_json::Value = row.get(0);
    let links = list(
        client,
        &LinkFilter {
            company: Some(company),
            limit: 1000,
            ..LinkFilter::default()
        },
    )
    .await?;
    if let Some(obj) = v.as_object_mut() {
        obj.insert("links".into(), serde_json::to_value(links)?);
    }
    Ok(Some(v))
}
