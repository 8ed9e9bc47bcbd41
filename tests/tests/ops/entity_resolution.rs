// Tests for the `entity_resolution` operation.
//
// Normalised names of the fixture (lower case, punctuation -> space, legal form
// stripped): 1 acme, 2 acme subsidiary, 3 acme grandchild, 4 globex, 5 initech,
// 6 müller, 7 acme, 8 globex, 9 umbrella, 10 gus garcía, 11 accounts payable.
// pg_trgm trigrams ("  a", " ac", "acm", "cme", "me " for "acme"):
//   acme                  5 trigrams
//   acme subsidiary      16 (5 of acme + "  s" " su" sub ubs bsi sid idi dia iar ary "ry ")
//   acme grandchild      16 (5 of acme + "  g" " gr" gra ran and ndc dch chi hil ild "ld ")
//   accounts payable     17 (shares "  a", " ac" with every acme name)
//   globex                7, gus garcía 10 (they share "  g")
// Cross-system pairs (left_id < right_id, different source systems):
//   1-7 acme/acme           sim 1            + domain acme.example + DE=DE
//                           score 0.5*1 + 0.15 + 0.05 = 0.700, linked (email_domain)
//   4-8 globex/globex       sim 1            + domain globex.example + US=US -> 0.700, linked
//   2-7 acme subsidiary/acme sim 5/16=0.3125 + DE=DE -> 0.15625 + 0.05 = 0.20625 -> 0.206
//   3-7 acme grandchild/acme sim 0.3125, AT<>DE      -> 0.15625 -> 0.156
//   6-11 müller/accounts payable sim 0 but same domain mueller.example
//                           -> 0.15, linked (email_domain)
//   1-11, 7-11 acme/accounts payable sim 2/(5+17-2) = 0.1 -> score 0.05
//   2-11, 3-11 sim 2/(16+17-2) = 0.0645 -> 0.065, score 0.032
//   4-10, 8-10 globex/gus garcía sim 1/(7+10-1) = 0.0625 -> 0.063, score 0.031
// Every other cross-system pair shares no trigram, domain or VAT id.

use quarry_tests::{empty_db, fixture_db};
use serde_json::{json, Map, Value};

type Row = Map<String, Value>;

fn pairs(rows: &[Row]) -> Vec<(i64, i64)> {
    rows.iter()
        .map(|r| {
            (
                r["left_id"].as_i64().unwrap(),
                r["right_id"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn num(r: &Row, col: &str) -> f64 {
    r[col]
        .as_f64()
        .unwrap_or_else(|| panic!("{col} is not a number: {:?}", r[col]))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[tokio::test]
async fn default_candidates_with_evidence() {
    let db = fixture_db().await;
    let rows = db.run("entity_resolution", json!({})).await;
    // min_similarity 0.3: the four name pairs at >= 0.3 plus 6-11 (shared domain).
    assert_eq!(pairs(&rows), vec![(1, 7), (4, 8), (2, 7), (3, 7), (6, 11)]);

    let scores: Vec<f64> = rows.iter().map(|r| num(r, "score")).collect();
    let expected = [0.7, 0.7, 0.206, 0.156, 0.15];
    for (got, want) in scores.iter().zip(expected) {
        assert!(
            close(*got, want),
            "scores {scores:?}, expected {expected:?}"
        );
    }
    let sims: Vec<f64> = rows.iter().map(|r| num(r, "name_similarity")).collect();
    for (got, want) in sims.iter().zip([1.0, 1.0, 0.313, 0.313, 0.0]) {
        assert!(close(*got, want), "similarities {sims:?}");
    }

    let acme = &rows[0];
    assert_eq!(acme["left_source_system"], json!("crm"));
    assert_eq!(acme["left_source_id"], json!("A1"));
    assert_eq!(acme["left_name"], json!("Acme Corp"));
    assert_eq!(acme["right_source_system"], json!("erp"));
    assert_eq!(acme["right_source_id"], json!("0000100001"));
    assert_eq!(acme["right_name"], json!("ACME CORP"));
    assert_eq!(acme["left_normalized_name"], json!("acme"));
    assert_eq!(acme["right_normalized_name"], json!("acme"));
    assert_eq!(acme["shared_email_domain"], json!("acme.example"));
    assert_eq!(acme["shared_vat_id"], Value::Null);
    assert_eq!(acme["same_country"], json!(true));
    assert_eq!(acme["shared_attributes"], json!({}));
    assert_eq!(acme["already_linked"], json!(true));
    assert_eq!(acme["link_methods"], json!("email_domain"));

    // Acme Subsidiary vs ACME CORP: same country, nothing else, not linked.
    let sub = &rows[2];
    assert_eq!(sub["shared_email_domain"], Value::Null);
    assert_eq!(sub["same_country"], json!(true));
    assert_eq!(sub["already_linked"], json!(false));
    assert_eq!(sub["link_methods"], Value::Null);
    assert_eq!(rows[3]["same_country"], json!(false)); // AT vs DE

    // Müller GmbH vs Accounts Payable: only the e-mail domain; the legal form is stripped.
    let mueller = &rows[4];
    assert_eq!(mueller["left_normalized_name"], json!("müller"));
    assert_eq!(mueller["right_normalized_name"], json!("accounts payable"));
    assert_eq!(mueller["shared_email_domain"], json!("mueller.example"));
    assert_eq!(mueller["same_country"], json!(false)); // CH vs NULL
    assert_eq!(mueller["already_linked"], json!(true));
}

#[tokio::test]
async fn include_linked_false_hides_known_links() {
    let db = fixture_db().await;
    let rows = db
        .run("entity_resolution", json!({"include_linked": false}))
        .await;
    // entity_links holds 1-7, 4-8 and 6-11: only the two Acme name candidates remain.
    assert_eq!(pairs(&rows), vec![(2, 7), (3, 7)]);
    assert!(rows.iter().all(|r| r["already_linked"] == json!(false)));
}

#[tokio::test]
async fn min_similarity_moves_the_name_threshold() {
    let db = fixture_db().await;
    // 0.5: 2-7 and 3-7 (0.3125) drop out; 6-11 stays because of its shared domain.
    let rows = db
        .run("entity_resolution", json!({"min_similarity": 0.5}))
        .await;
    assert_eq!(pairs(&rows), vec![(1, 7), (4, 8), (6, 11)]);

    // 0.08: acme / accounts payable (0.1, score 0.05) join; 0.0645 and 0.0625 do not.
    // Equal scores are ordered by left_id, then right_id.
    let rows = db
        .run("entity_resolution", json!({"min_similarity": 0.08}))
        .await;
    assert_eq!(
        pairs(&rows),
        vec![(1, 7), (4, 8), (2, 7), (3, 7), (6, 11), (1, 11), (7, 11)]
    );
    assert!(close(num(&rows[5], "name_similarity"), 0.1));
    assert!(close(num(&rows[5], "score"), 0.05));

    // 1: only identical normalised names, plus the domain pair.
    let rows = db
        .run("entity_resolution", json!({"min_similarity": 1}))
        .await;
    assert_eq!(pairs(&rows), vec![(1, 7), (4, 8), (6, 11)]);
}

#[tokio::test]
async fn source_systems_restricts_both_sides() {
    let db = fixture_db().await;
    // crm + shop: only Müller GmbH / Accounts Payable.
    let rows = db
        .run(
            "entity_resolution",
            json!({"source_systems": ["crm", "shop"]}),
        )
        .await;
    assert_eq!(pairs(&rows), vec![(6, 11)]);
    // erp + shop: nothing reaches 0.3 and no domain or VAT id is shared.
    let rows = db
        .run(
            "entity_resolution",
            json!({"source_systems": ["erp", "shop"]}),
        )
        .await;
    assert!(rows.is_empty(), "{rows:?}");
    // A single system never pairs with itself.
    let rows = db
        .run("entity_resolution", json!({"source_systems": ["crm"]}))
        .await;
    assert!(rows.is_empty(), "{rows:?}");
}

#[tokio::test]
async fn limit_keeps_the_best_pairs() {
    let db = fixture_db().await;
    let rows = db.run("entity_resolution", json!({"limit": 3})).await;
    assert_eq!(pairs(&rows), vec![(1, 7), (4, 8), (2, 7)]);
}

#[tokio::test]
async fn vat_id_and_attributes_add_to_the_score() {
    let db = fixture_db().await;
    db.exec(
        "UPDATE canonical.organizations
            SET attributes = '{\"CustomerAccountGroup\":\"KUNA\",\"Region\":\"APAC\"}'
          WHERE source_system = 'erp' AND source_id = '0000100003';
         INSERT INTO canonical.organizations (source_system, source_id, name, country_code, vat_id, attributes)
         VALUES ('crm', 'A7', 'Umbrella Corporation', 'JP', 'jp 111-111-111',
                 '{\"CustomerAccountGroup\":\"KUNA\",\"Region\":\"EMEA\"}');
         INSERT INTO canonical.organizations (source_system, source_id, name, email, is_deleted)
         VALUES ('shop', '207119999', 'Initech Inc.', 'ap@initech.example', true);",
    )
    .await;
    let rows = db.run("entity_resolution", json!({})).await;
    // UMBRELLA (9, erp) vs Umbrella Corporation (crm): names both normalise to
    // "umbrella" (sim 1), VAT JP111111111 once spaces and dashes are removed, JP = JP,
    // CustomerAccountGroup KUNA on both (Region differs):
    // 0.5*1 + 0.25 + 0.05 + 0.05 = 0.85, the best pair.
    let top = &rows[0];
    assert_eq!(top["left_id"], json!(9));
    assert_eq!(top["right_source_system"], json!("crm"));
    assert_eq!(top["right_source_id"], json!("A7"));
    assert_eq!(top["right_normalized_name"], json!("umbrella"));
    assert!(close(num(top, "name_similarity"), 1.0));
    assert_eq!(top["shared_vat_id"], json!("JP111111111"));
    assert_eq!(top["shared_email_domain"], Value::Null);
    assert_eq!(top["same_country"], json!(true));
    assert_eq!(
        top["shared_attributes"],
        json!({"CustomerAccountGroup": "KUNA"})
    );
    assert!(close(num(top, "score"), 0.85));
    assert_eq!(top["already_linked"], json!(false));
    // The deleted shop "Initech Inc." (same domain and name as Initech, 5) is ignored:
    // the rest is the default result.
    assert_eq!(rows.len(), 6);
    assert_eq!(
        pairs(&rows[1..]),
        vec![(1, 7), (4, 8), (2, 7), (3, 7), (6, 11)]
    );
}

#[tokio::test]
async fn persons_and_public_mail_domains_are_no_evidence() {
    let db = fixture_db().await;
    db.exec(
        "INSERT INTO canonical.organizations (source_system, source_id, kind, name, email) VALUES
           ('shop', 'P1', 'person',  'Globex',       'someone@globex.example'),
           ('crm',  'Z1', 'company', 'Zeta Widgets', 'z@freemail.example'),
           ('erp',  'Z2', 'company', 'Omega Tools',  'o@freemail.example');",
    )
    .await;
    let rows = db.run("entity_resolution", json!({})).await;
    // The shop person "Globex" would match Globex (4) and GLOBEX (8) by name and domain,
    // but persons take no part. Zeta Widgets / Omega Tools share no trigram; their only
    // evidence is freemail.example (2 organizations): score 0.15, after 6-11 (same score,
    // smaller left_id).
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().all(|r| r["right_source_id"] != json!("P1")));
    let zeta = &rows[5];
    assert_eq!(zeta["left_source_id"], json!("Z1"));
    assert_eq!(zeta["right_source_id"], json!("Z2"));
    assert_eq!(zeta["shared_email_domain"], json!("freemail.example"));
    assert!(close(num(zeta, "name_similarity"), 0.0));
    assert!(close(num(zeta, "score"), 0.15));

    // 24 more companies on freemail.example make 26 (> 25): a public mail provider,
    // no longer evidence, so the pair is gone and the fixture result is back.
    db.exec(
        "INSERT INTO canonical.organizations (source_system, source_id, name, email)
         SELECT 'crm', 'F' || i, 'Filler ' || i, 'f' || i || '@freemail.example'
         FROM generate_series(1, 24) AS i;",
    )
    .await;
    let rows = db.run("entity_resolution", json!({})).await;
    assert_eq!(pairs(&rows), vec![(1, 7), (4, 8), (2, 7), (3, 7), (6, 11)]);
}

#[tokio::test]
async fn rejects_invalid_parameters() {
    let db = fixture_db().await;
    let err = db
        .run_err("entity_resolution", json!({"min_similarity": 1.5}))
        .await;
    assert!(err.contains("min_similarity"), "{err}");
    let err = db
        .run_err("entity_resolution", json!({"min_similarity": -0.1}))
        .await;
    assert!(err.contains("min_similarity"), "{err}");
    let err = db.run_err("entity_resolution", json!({"limit": 0})).await;
    assert!(err.contains("limit"), "{err}");
    let err = db
        .run_err("entity_resolution", json!({"limit": 100001}))
        .await;
    assert!(err.contains("limit"), "{err}");
    let err = db
        .run_err(
            "entity_resolution",
            json!({"source_systems": ["crm'; DROP TABLE x; --"]}),
        )
        .await;
    assert!(err.contains("source_systems"), "{err}");
    let err = db
        .run_err("entity_resolution", json!({"include_linked": "sometimes"}))
        .await;
    assert!(err.contains("include_linked"), "{err}");
    let err = db
        .run_err("entity_resolution", json!({"threshold": 0.5}))
        .await;
    assert!(err.contains("threshold"), "{err}");
}

/// Organizations whose names come from a short list of words (as in real exports
/// of chains and in `quarry demo-data`: many organizations share a name), some
/// sharing e-mail domains (a few public ones used by more than 25), VAT ids,
/// countries and attributes, over three systems; a few pairs already linked.
const MANY_SHARED_NAMES: &str = r#"
INSERT INTO canonical.organizations (source_system, source_id, kind, name, email, country_code, vat_id, attributes)
SELECT (ARRAY['crm', 'erp', 'shop'])[1 + i % 3],
       'S' || i,
       CASE WHEN i % 17 = 0 THEN 'person' ELSE 'company' END,
       (ARRAY['Acme', 'Globex', 'Initech', 'Umbrella', 'Hooli', 'Acme Holding'])[1 + (i * 7) % 6]
         || CASE WHEN i % 4 = 0 THEN ' ' || (ARRAY['Industries', 'Systems', 'Group'])[1 + i % 3] ELSE '' END
         || CASE WHEN i % 5 = 0 THEN ' GmbH' WHEN i % 5 = 1 THEN ', Inc.' ELSE '' END,
       CASE WHEN i % 6 = 0 THEN NULL
            WHEN i % 6 = 1 THEN 'x' || i || '@gmail.example'
            ELSE 'ap@d' || (i % 40) || '.example' END,
       (ARRAY['DE', 'US', 'FR'])[1 + (i / 3) % 3],
       CASE WHEN i % 9 = 0 THEN 'DE ' || (100 + i % 11) ELSE NULL END,
       CASE WHEN i % 8 = 0 THEN jsonb_build_object('Segment', 'S' || (i % 2)) ELSE '{}'::jsonb END
FROM generate_series(1, 300) AS i;
INSERT INTO canonical.entity_links (left_id, right_id, method, score, evidence)
SELECT a.id, b.id, 'manual', 1.000, '{}'
FROM canonical.organizations a
JOIN canonical.organizations b ON b.id = a.id + 1
WHERE a.id % 10 = 3;
"#;

/// The answer is exactly the best `limit` of every candidate pair: the operation
/// pairs organizations only where they can make the answer, so its rows are
/// compared with the version that scored every candidate pair
/// (tests/fixtures/reference/entity_resolution_every_pair.sql), over names
/// shared by many organizations and parameters that move each bound.
#[tokio::test]
async fn bounded_answer_equals_scoring_every_pair() {
    let db = empty_db().await;
    db.exec(MANY_SHARED_NAMES).await;
    let root = quarry_tests::repo_root();
    let source = quarry_core::PackSource {
        yaml_file: "queries/entity_resolution.yaml".into(),
        yaml_text: std::fs::read_to_string(root.join("queries/entity_resolution.yaml")).unwrap(),
        sql_file: "tests/fixtures/reference/entity_resolution_every_pair.sql".into(),
        sql_text: Some(
            std::fs::read_to_string(
                root.join("tests/fixtures/reference/entity_resolution_every_pair.sql"),
            )
            .unwrap(),
        ),
    };
    let (reference, diags) = quarry_core::packs::loader::check_pack(&source);
    let reference = reference.unwrap_or_else(|| panic!("{diags:?}"));
    let mut compared = 0;
    for params in [
        json!({}),
        json!({"limit": 1}),
        json!({"limit": 7}),
        json!({"limit": 60}),
        json!({"limit": 10000}),
        json!({"min_similarity": 0}),
        json!({"min_similarity": 0, "limit": 25}),
        json!({"min_similarity": 0.6, "limit": 40}),
        json!({"min_similarity": 0.95, "limit": 3}),
        json!({"min_similarity": 1}),
        json!({"include_linked": false, "limit": 30}),
        json!({"include_linked": false, "min_similarity": 0.5}),
        json!({"source_systems": ["crm", "shop"], "limit": 20}),
        json!({"source_systems": ["erp"]}),
    ] {
        let got = db.run("entity_resolution", params.clone()).await;
        let mut reader = quarry_db::connect_reader(&db.url).await.unwrap();
        let input = params.as_object().cloned().unwrap_or_default();
        let want = quarry_db::execute_pack(
            &mut reader,
            &reference,
            &input,
            quarry_core::packs::params::InputStyle::Json,
            quarry_db::CallOptions::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("reference failed: {e}"))
        .1
        .row_objects();
        assert_eq!(got, want, "rows differ for {params}");
        compared += want.len();
    }
    // The data makes answers of every size, not empty ones.
    assert!(compared > 2_000, "only {compared} rows compared");
}
