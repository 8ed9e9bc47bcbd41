//! One customer across systems, on generated data whose truth is known:
//! `quarry demo-data` writes `expected-companies.csv` (which records are the
//! same real-world company), `quarry ingest` links and clusters them by
//! mappings/companies.yaml. Measured here: precision and recall of the links of
//! each rule and of the companies; stable company ids across a forced rebuild
//! and a re-delivery; people's decisions (reject, confirm, split) respected by
//! later loads; survivorship taking the declared source; and customer_analysis
//! with `unify` placing ERP revenue under the industry only the CRM knows.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use quarry_tests::{empty_db, TestDb};
use serde_json::{json, Value};

struct Loaded {
    db: TestDb,
    dir: PathBuf,
    /// organizations.id -> true company (from the generator).
    truth: HashMap<i64, String>,
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "quarry failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn load(scale: &str, tag: &str) -> Loaded {
    let db = empty_db().await;
    let dir = std::env::temp_dir().join(format!("quarry-co-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dirs = dir.display().to_string();
    ok(&db.quarry(&["demo-data", &dirs, "--scale", scale, "--seed", "11"]));
    ok(&db.quarry(&["ingest", &dirs]));
    let c = db.client().await;
    let ids: HashMap<(String, String), i64> = c
        .query(
            "SELECT source_system, source_id, id FROM canonical.organizations",
            &[],
        )
        .await
        .expect("organizations")
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect();
    let text = std::fs::read_to_string(dir.join("expected-companies.csv")).expect("truth");
    let mut truth = HashMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if let Some(id) = ids.get(&(f[0].to_string(), f[1].to_string())) {
            truth.insert(*id, f[2].to_string());
        }
    }
    assert_eq!(
        truth.len(),
        ids.len(),
        "every loaded organization is in the truth file"
    );
    Loaded { db, dir, truth }
}

/// Pairs of organizations of different systems that are one company in truth.
fn true_pairs(truth: &HashMap<i64, String>, systems: &HashMap<i64, String>) -> usize {
    let mut by: HashMap<&str, Vec<i64>> = HashMap::new();
    for (id, co) in truth {
        by.entry(co.as_str()).or_default().push(*id);
    }
    by.values()
        .map(|ids| {
            let mut n = 0;
            for (i, a) in ids.iter().enumerate() {
                for b in &ids[i + 1..] {
                    if systems[a] != systems[b] {
                        n += 1;
                    }
                }
            }
            n
        })
        .sum()
}

/// Every automatic link: (rule, left, right) -> (score, reason).
async fn all_links(db: &TestDb) -> BTreeMap<(String, i64, i64), (String, String)> {
    db.client()
        .await
        .query(
            "SELECT method, left_id, right_id, score::text, reason FROM canonical.entity_links",
            &[],
        )
        .await
        .expect("links")
        .iter()
        .map(|r| ((r.get(0), r.get(1), r.get(2)), (r.get(3), r.get(4))))
        .collect()
}

async fn memberships(db: &TestDb) -> BTreeMap<i64, i64> {
    db.client()
        .await
        .query(
            "SELECT organization_id, company_id FROM canonical.company_members",
            &[],
        )
        .await
        .expect("members")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn links_and_companies_match_the_known_truth() {
    let l = load("3000", "truth").await;
    let c = l.db.client().await;
    let systems: HashMap<i64, String> = c
        .query("SELECT id, source_system FROM canonical.organizations", &[])
        .await
        .expect("systems")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let all_true = true_pairs(&l.truth, &systems);
    assert!(all_true > 100, "the generator makes cross-system companies");

    // Precision and recall per rule: a link is right when both sides are one
    // company in truth; recall counts the true cross-system pairs it finds.
    let links: Vec<(String, i64, i64, f64)> = c
        .query(
            "SELECT method, left_id, right_id, score::float8 FROM canonical.entity_links",
            &[],
        )
        .await
        .expect("links")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let mut per_rule: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (m, a, b, _) in &links {
        let e = per_rule.entry(m.clone()).or_default();
        e.0 += 1;
        if l.truth[a] == l.truth[b] {
            e.1 += 1;
        }
    }
    println!("true cross-system pairs: {all_true}");
    println!("rule             links  precision  recall");
    for (rule, (n, right)) in &per_rule {
        println!(
            "{rule:<16} {n:>6}  {:>9.4}  {:>6.4}",
            *right as f64 / *n as f64,
            *right as f64 / all_true as f64
        );
    }
    let precision = |rule: &str| {
        let (n, right) = per_rule[rule];
        right as f64 / n as f64
    };
    // Exact keys are exact in this data: an accounts-payable domain is one company.
    assert_eq!(precision("email_domain"), 1.0);
    assert!(per_rule["email_domain"].0 > 100);

    // Companies against the truth, as pairs of organizations in one company.
    let members = memberships(&l.db).await;
    assert_eq!(
        members.len(),
        l.truth.len(),
        "every organization has a company"
    );
    let mut by_company: HashMap<i64, Vec<i64>> = HashMap::new();
    for (org, co) in &members {
        by_company.entry(*co).or_default().push(*org);
    }
    let (mut found, mut right) = (0usize, 0usize);
    for ids in by_company.values() {
        for (i, a) in ids.iter().enumerate() {
            for b in &ids[i + 1..] {
                if systems[a] != systems[b] {
                    found += 1;
                    if l.truth[a] == l.truth[b] {
                        right += 1;
                    }
                }
            }
        }
    }
    let (p, r) = (right as f64 / found as f64, right as f64 / all_true as f64);
    println!("companies: {found} cross-system pairs, precision {p:.4}, recall {r:.4}");
    assert!(p >= 0.98, "company precision {p}");
    assert!(r >= 0.98, "company recall {r}");

    // Stable ids: a forced rebuild of everything gives every organization the
    // company it had. And the links the run resolved once at its end, its
    // sources loaded in parallel, are the ones computed from scratch.
    let before = memberships(&l.db).await;
    let links_before = all_links(&l.db).await;
    let out = ok(&l.db.quarry(&["companies", "rebuild", "--force"]));
    assert!(out.contains("registered"), "{out}");
    assert_eq!(memberships(&l.db).await, before, "ids survive a rebuild");
    assert_eq!(
        all_links(&l.db).await,
        links_before,
        "the run's links are the rebuild's"
    );
    let _ = std::fs::remove_dir_all(&l.dir);
}

#[tokio::test]
async fn people_decide_and_later_loads_respect_it() {
    let l = load("1000", "decide").await;
    let c = l.db.client().await;
    // An accepted CRM-ERP pair linked by e-mail domain.
    let row = c
        .query_one(
            // Sources load in parallel, so either side may have the smaller id.
            "SELECT CASE WHEN a.source_system = 'crm' THEN l.left_id ELSE l.right_id END,
                    CASE WHEN a.source_system = 'crm' THEN l.right_id ELSE l.left_id END, m.company_id
             FROM canonical.entity_links l
             JOIN canonical.organizations a ON a.id = l.left_id
             JOIN canonical.organizations o ON o.id = l.right_id
             JOIN canonical.company_members m ON m.organization_id = l.left_id
             WHERE l.method = 'email_domain'
               AND ARRAY[a.source_system, o.source_system] @> ARRAY['crm', 'erp']
               AND (SELECT count(*) FROM canonical.company_members x WHERE x.company_id = m.company_id) = 2
             ORDER BY l.left_id LIMIT 1",
            &[],
        )
        .await
        .expect("an accepted pair");
    let (crm, erp, company): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));

    let out = ok(&l.db.quarry(&[
        "links",
        "reject",
        &crm.to_string(),
        &erp.to_string(),
        "--note",
        "different companies, shared mailbox",
    ]));
    assert!(out.contains("rejected"), "{out}");
    let members = memberships(&l.db).await;
    assert_ne!(
        members[&crm], members[&erp],
        "a rejected pair is two companies"
    );
    // Ties keep the id with the smallest organization's part.
    assert_eq!(members[&crm.min(erp)], company);

    // The ERP customer is delivered again, changed: the rule sees the same
    // domain and must still not link the rejected pair.
    let customers = l.dir.join("erp-data/customers-2024-06-01-00.json");
    let text = std::fs::read_to_string(&customers).expect("customers");
    let changed = text.replacen("\"CreditLimit\": \"", "\"CreditLimit\": \"1", 1);
    let again = l.dir.join("erp-data/customers-2024-07-01-00.json");
    std::fs::write(&again, changed).expect("write");
    ok(&l.db.quarry(&["ingest", &again.display().to_string()]));
    let members = memberships(&l.db).await;
    assert_ne!(members[&crm], members[&erp], "still apart after a new load");
    let listed: Vec<Value> = serde_json::from_str(&ok(&l
        .db
        .quarry(&["links", "list", "--status", "rejected", "--json"])))
    .expect("json");
    let rejected = listed
        .iter()
        .find(|p| p["left_id"] == json!(crm.min(erp)) && p["right_id"] == json!(crm.max(erp)))
        .unwrap_or_else(|| panic!("the rejected pair is listed: {listed:#?}"));
    assert!(rejected["decided_by"]
        .as_str()
        .unwrap_or_default()
        .starts_with("cli"));
    assert!(rejected["decided_at"].is_string());

    // Confirming joins them again, whatever the rules say.
    ok(&l
        .db
        .quarry(&["links", "confirm", &crm.to_string(), &erp.to_string()]));
    let members = memberships(&l.db).await;
    assert_eq!(members[&crm], members[&erp]);
    assert_eq!(members[&crm], company, "the company got its id back");

    // Split takes the ERP customer out again and it stays out.
    ok(&l.db.quarry(&["links", "split", &erp.to_string()]));
    let members = memberships(&l.db).await;
    assert_ne!(members[&crm], members[&erp]);

    // Mistakes get a message that says what to do.
    let out = l.db.quarry(&["links", "confirm", "1", "999999999"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no organization has id 999999999"), "{err}");
    let _ = std::fs::remove_dir_all(&l.dir);
}

#[tokio::test]
async fn survivorship_and_unified_customer_analysis_follow_the_declared_sources() {
    let l = load("2000", "golden").await;
    let c = l.db.client().await;
    // Every company with a CRM member takes its name, industry and tier from
    // the CRM, and its country from the ERP when it has an ERP member.
    let wrong: i64 = c
        .query_one(
            "SELECT count(*) FROM canonical.companies co
             WHERE 'crm' = ANY(co.source_systems)
               AND (co.value_sources->'industry'->>'source_system' IS DISTINCT FROM 'crm'
                    OR co.value_sources->'name'->>'source_system' IS DISTINCT FROM 'crm'
                    OR ('erp' = ANY(co.source_systems)
                        AND co.value_sources->'country_code'->>'source_system' IS DISTINCT FROM 'erp'))",
            &[],
        )
        .await
        .expect("survivorship")
        .get(0);
    assert_eq!(
        wrong, 0,
        "companies whose values do not come from the declared source"
    );
    let industry_matches: i64 = c
        .query_one(
            "SELECT count(*) FROM canonical.companies co
             JOIN canonical.organizations o ON o.id = (co.value_sources->'industry'->>'organization_id')::bigint
             WHERE o.industry IS DISTINCT FROM co.industry",
            &[],
        )
        .await
        .expect("value sources")
        .get(0);
    assert_eq!(
        industry_matches, 0,
        "value_sources points at the value's record"
    );

    // "Lifetime value by industry" of the ERP's orders, per company: the
    // expectation is computed from the generator's truth, independently of the
    // links: an ERP customer that copies a CRM account has that account's
    // industry; the others have none.
    let unified = l
        .db
        .run(
            "customer_analysis",
            json!({"group_by": "industry", "level": "segment", "unify": true, "source_systems": ["erp"]}),
        )
        .await;
    let client = l.db.client().await;
    client
        .batch_execute("CREATE TEMP TABLE truth (id bigint, company text)")
        .await
        .expect("truth table");
    let ids: Vec<i64> = l.truth.keys().copied().collect();
    let cos: Vec<String> = ids.iter().map(|i| l.truth[i].clone()).collect();
    client
        .execute(
            "INSERT INTO truth SELECT * FROM unnest($1::bigint[], $2::text[])",
            &[&ids, &cos],
        )
        .await
        .expect("truth rows");
    let expected: BTreeMap<String, String> = client
        .query(
            "SELECT coalesce(crm.industry, '(unknown)'), sum(o.total_amount)::text
             FROM canonical.orders o
             JOIN truth t ON t.id = o.organization_id
             LEFT JOIN (SELECT t2.company, a.industry FROM truth t2
                        JOIN canonical.organizations a ON a.id = t2.id AND a.source_system = 'crm') crm
               ON crm.company = t.company
             WHERE o.source_system = 'erp'
             GROUP BY 1",
            &[],
        )
        .await
        .expect("expected revenue")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // Money as the API sends it (a JSON number) against PostgreSQL's text, to the cent.
    let cents = |s: &str| format!("{:.2}", s.parse::<f64>().unwrap_or(f64::NAN));
    let expected: BTreeMap<String, String> =
        expected.into_iter().map(|(k, v)| (k, cents(&v))).collect();
    let got: BTreeMap<String, String> = unified
        .iter()
        .filter(|r| r["segment_order_count"].as_i64().unwrap_or(0) > 0)
        .map(|r| {
            (
                r["segment"].as_str().unwrap_or_default().to_string(),
                cents(r["segment_lifetime_value"].to_string().trim_matches('"')),
            )
        })
        .collect();
    println!("ERP revenue by industry, unified: {got:#?}");
    assert!(
        got.len() > 3,
        "revenue spreads over real industries: {got:?}"
    );
    assert_eq!(got, expected);

    // Without unify the same question puts every ERP cent under (unknown).
    let flat =
        l.db.run(
            "customer_analysis",
            json!({"group_by": "industry", "level": "segment", "source_systems": ["erp"]}),
        )
        .await;
    let with_orders: Vec<&str> = flat
        .iter()
        .filter(|r| r["segment_order_count"].as_i64().unwrap_or(0) > 0)
        .map(|r| r["segment"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(with_orders, ["(unknown)"]);

    // A company shows its members, links and value sources.
    let company: i64 = c
        .query_one(
            "SELECT id FROM canonical.companies WHERE source_systems = '{crm,erp,shop}' ORDER BY id LIMIT 1",
            &[],
        )
        .await
        .expect("a company in three systems")
        .get(0);
    let shown: Value = serde_json::from_str(&ok(&l.db.quarry(&[
        "companies",
        "show",
        &company.to_string(),
    ])))
    .expect("json");
    assert_eq!(shown["company"]["id"], json!(company));
    let systems: Vec<&str> = shown["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["source_system"].as_str().unwrap_or_default())
        .collect();
    assert!(systems.contains(&"crm") && systems.contains(&"erp") && systems.contains(&"shop"));
    assert!(shown["links"].as_array().is_some_and(|l| !l.is_empty()));
    assert_eq!(
        shown["value_sources"]["industry"]["source_system"],
        json!("crm")
    );
    let _ = std::fs::remove_dir_all(&l.dir);
}

/// Organizations without a company.
async fn without_company(db: &TestDb) -> Value {
    db.value(
        "SELECT count(*) FROM canonical.organizations o
         WHERE NOT EXISTS (SELECT 1 FROM canonical.company_members m WHERE m.organization_id = o.id)",
    )
    .await
}

/// Organizations and block values waiting for company resolution.
async fn queued(db: &TestDb) -> Value {
    db.value(
        "SELECT (SELECT count(*) FROM quarry.company_queue) + (SELECT count(*) FROM quarry.company_queue_values)",
    )
    .await
}

/// Loads the file at `path` (object key `key`) with the `source` mapping as
/// `quarry ingest` does, leaving its companies queued, and gives up after 60 s
/// (a file that waits for a resolution would hang here).
async fn load_deferred(
    db: &TestDb,
    source: &str,
    path: &std::path::Path,
    key: &str,
) -> quarry_db::ingest::FileReport {
    let mappings = quarry_core::files::load_mappings(&quarry_tests::repo_root().join("mappings"))
        .expect("mappings");
    let mapping = std::sync::Arc::new(
        mappings
            .into_iter()
            .find(|m| m.spec.source == source)
            .expect("the source's mapping"),
    );
    let mut writer = quarry_db::connect(&quarry_db::writer_url(&db.url).expect("writer url"))
        .await
        .expect("writer");
    let path = path.to_path_buf();
    let open: quarry_db::ingest::Opener = std::sync::Arc::new(move || {
        Ok(Box::new(std::fs::File::open(&path)?) as Box<dyn std::io::Read + Send>)
    });
    let load = quarry_db::ingest::ingest_with(
        &mut writer,
        mapping,
        key,
        open,
        quarry_db::ingest::IngestOptions {
            defer_companies: true,
            ..Default::default()
        },
    );
    tokio::time::timeout(std::time::Duration::from_secs(60), load)
        .await
        .expect("the file waited for a resolution")
        .expect("ingest")
}

/// A run stopped after its files committed and before it resolved their
/// companies loses nothing: the organizations stay queued (in the files'
/// transactions) and the next run, or `quarry companies resolve`, resolves
/// them, to the very links and companies a rebuild from scratch computes.
#[tokio::test]
async fn a_run_stopped_before_resolving_companies_loses_nothing() {
    let db = empty_db().await;
    let dir = std::env::temp_dir().join(format!("quarry-co-stop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dirs = dir.display().to_string();
    ok(&db.quarry(&["demo-data", &dirs, "--scale", "2000", "--seed", "5"]));
    // CRM and ERP by a whole run, one source at a time.
    let crm = dir.join("crm-data").display().to_string();
    let erp = dir.join("erp-data").display().to_string();
    let out = ok(&db.quarry(&["ingest", "--jobs", "1", &crm, &erp]));
    assert!(out.contains("companies: links and companies of"), "{out}");
    assert_eq!(
        queued(&db).await,
        json!(0),
        "a finished run leaves nothing queued"
    );

    // The shop's file as a run that stopped right after the file committed.
    let shop = std::fs::read_dir(dir.join("shop-data"))
        .expect("shop-data")
        .map(|e| e.expect("entry").path())
        .next()
        .expect("a shop file");
    let key = format!(
        "shop-data/{}",
        shop.file_name().expect("name").to_string_lossy()
    );
    let report = load_deferred(&db, "shop", &shop, &key).await;
    assert!(report.inserted > 0, "{report:?}");
    let homeless = without_company(&db).await;
    assert!(
        homeless.as_i64().unwrap_or(0) > 0,
        "the shop's customers wait for their companies"
    );
    assert!(
        queued(&db).await.as_i64().unwrap_or(0) > 0,
        "and are queued"
    );

    // The next run: every file a duplicate, the queue resolved.
    let all = dir.display().to_string();
    let out = ok(&db.quarry(&["ingest", &all]));
    assert!(out.contains("0 loaded"), "{out}");
    assert!(out.contains("companies: links and companies of"), "{out}");
    assert_eq!(queued(&db).await, json!(0));
    let homeless = without_company(&db).await;
    assert_eq!(homeless, json!(0), "every organization has its company");
    let (members, resolved_links) = (memberships(&db).await, all_links(&db).await);
    ok(&db.quarry(&["companies", "rebuild", "--force"]));
    assert_eq!(memberships(&db).await, members, "the rebuild's companies");
    assert_eq!(all_links(&db).await, resolved_links, "the rebuild's links");

    // Nothing queued: `quarry companies resolve` says so.
    let out = ok(&db.quarry(&["companies", "resolve"]));
    assert!(out.contains("nothing queued"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A file that leaves its companies to the end of the run never waits for a
/// resolution: here one holds every queued row it took (deleted, uncommitted),
/// as a resolution does while it computes, and the file, writing organizations
/// whose rows and values are in the queue, still loads. Its own entries stay
/// for the next resolution, which gives what a rebuild from scratch gives.
#[tokio::test]
async fn a_deferring_file_never_waits_for_a_resolution() {
    let db = empty_db().await;
    let dir = std::env::temp_dir().join(format!("quarry-co-wait-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dirs = dir.display().to_string();
    ok(&db.quarry(&["demo-data", &dirs, "--scale", "500", "--seed", "9"]));
    ok(&db.quarry(&["ingest", &dirs]));
    // Committed queue entries for every organization and name value (as files
    // of a run leave them before its resolution).
    db.exec(
        "INSERT INTO quarry.company_queue (organization_id, rules_fingerprint)
           SELECT id, (SELECT fingerprint FROM quarry.company_rules) FROM canonical.organizations;
         INSERT INTO quarry.company_queue_values (rule, value)
           SELECT DISTINCT 'name_country', name_key FROM canonical.organizations WHERE name_key IS NOT NULL",
    )
    .await;
    // A resolution in progress: it took (deleted) every row it saw.
    let holder = db.client().await;
    holder
        .batch_execute(
            "BEGIN;
             DELETE FROM quarry.company_queue;
             DELETE FROM quarry.company_queue_values;",
        )
        .await
        .expect("a resolution's take");

    // The ERP's customers again, changed (SAP has no timestamps: the later
    // delivery wins), so every customer is written again.
    let customers = dir.join("erp-data/customers-2024-06-01-00.json");
    let text = std::fs::read_to_string(&customers).expect("customers");
    let changed = text
        .replace("\"CreditLimit\": \"", "\"CreditLimit\": \"1")
        .replace("\"CreditLimit\":\"", "\"CreditLimit\":\"1");
    assert_ne!(changed, text, "the customers have credit limits to change");
    let again = dir.join("erp-data/customers-2024-08-01-00.json");
    std::fs::write(&again, changed).expect("write");
    let report = load_deferred(&db, "erp", &again, "erp-data/customers-2024-08-01-00.json").await;
    assert!(report.updated > 0, "{report:?}");

    // The resolution rolls back (its rows come back); the next one takes
    // them and the file's, and agrees with a rebuild.
    holder.batch_execute("ROLLBACK").await.expect("rollback");
    let out = ok(&db.quarry(&["companies", "resolve"]));
    assert!(out.contains("recomputed"), "{out}");
    assert_eq!(queued(&db).await, json!(0));
    let (members, resolved_links) = (memberships(&db).await, all_links(&db).await);
    ok(&db.quarry(&["companies", "rebuild", "--force"]));
    assert_eq!(memberships(&db).await, members, "the rebuild's companies");
    assert_eq!(all_links(&db).await, resolved_links, "the rebuild's links");
    let _ = std::fs::remove_dir_all(&dir);
}
