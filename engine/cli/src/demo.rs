//! `quarry demo`: migrate, load deterministic demo data, run a few operations.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use quarry_core::params::InputStyle;

const DEMO_SQL: &str = include_str!("../../db/sql/demo.sql");

pub async fn run(database_url: &str, queries: &Path, scale: u32, quiet: bool) -> Result<ExitCode> {
    let scale = scale.clamp(1, 1000);
    let mut client = quarry_db::connect(database_url).await?;
    quarry_db::migrate(&mut client).await?;
    let sql = DEMO_SQL.replace("{{SCALE}}", &scale.to_string());
    let tx = client.transaction().await?;
    tx.batch_execute(&sql)
        .await
        .context("loading the demo data")?;
    tx.commit().await?;
    let counts = client
        .query(
            "SELECT 'organizations', count(*) FROM canonical.organizations UNION ALL
             SELECT 'orders', count(*) FROM canonical.orders UNION ALL
             SELECT 'order_lines', count(*) FROM canonical.order_lines UNION ALL
             SELECT 'opportunities', count(*) FROM canonical.opportunities",
            &[],
        )
        .await?;
    let summary: Vec<String> = counts
        .iter()
        .map(|r| format!("{} {}", r.get::<_, i64>(1), r.get::<_, &str>(0)))
        .collect();
    println!("demo data loaded: {}", summary.join(", "));
    if quiet {
        return Ok(ExitCode::SUCCESS);
    }
    let set = crate::load_packs(queries)?;
    let mut reader = quarry_db::connect_reader(database_url).await?;
    let calls: [(&str, &[(&str, &str)]); 4] = [
        ("simple_demo", &[]),
        ("database_info", &[]),
        (
            "customer_analysis",
            &[("level", "segment"), ("group_by", "industry")],
        ),
        ("revenue_analysis", &[("granularity", "quarter")]),
    ];
    for (op, params) in calls {
        let Some(pack) = set.get(op) else { continue };
        let input = params
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        println!(
            "\n$ quarry query {op}{}",
            params
                .iter()
                .map(|(k, v)| format!(" -p {k}={v}"))
                .collect::<String>()
        );
        let opts = quarry_db::CallOptions {
            max_rows: Some(15),
            ..Default::default()
        };
        match quarry_db::execute_pack(&mut reader, pack, &input, InputStyle::Text, opts).await {
            Ok((resolved, out)) => {
                crate::output::print(crate::output::Format::Table, pack, &resolved, &out)?
            }
            Err(e) => eprintln!("{op} failed: {e}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}
