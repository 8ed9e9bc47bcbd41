//! `quarry demo`: migrate, generate deterministic exports of the three sources,
//! ingest them through the real ingest path, and run a few operations.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use quarry_core::packs::params::InputStyle;

pub async fn run(
    database_url: &str,
    queries: &Path,
    mappings: &Path,
    scale: u32,
    quiet: bool,
) -> Result<ExitCode> {
    let scale = u64::from(scale.clamp(1, 100));
    let mut client = quarry_db::connect(database_url).await?;
    quarry_db::migrate(&mut client).await?;
    // Same seed and scale give the same files, so a second demo run is all duplicates.
    let dir = Path::new(".quarry").join(format!("demo-data-{scale}"));
    quarry_demo::generate(
        &dir,
        &quarry_demo::GenOptions {
            scale: scale * 10_000,
            seed: 42,
        },
    )
    .with_context(|| format!("writing demo exports to {}", dir.display()))?;
    println!(
        "demo exports written to {} (with deliberate defects); ingesting them:",
        dir.display()
    );
    crate::ingest::run(
        database_url,
        mappings,
        std::slice::from_ref(&dir),
        None,
        false,
        quarry_db::ingest::DEFAULT_CLAIM_WAIT,
        crate::ingest::default_jobs(),
    )
    .await?;
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
    println!("canonical rows now: {}", summary.join(", "));
    if quiet {
        return Ok(ExitCode::SUCCESS);
    }
    let set = crate::load_packs(queries)?;
    let mut reader = quarry_db::connect_reader(database_url).await?;
    let calls: [(&str, &[(&str, &str)]); 4] = [
        ("simple_demo", &[]),
        ("database_info", &[]),
        // Lifetime value by industry, per company across the three systems:
        // the ERP's and the shop's orders land under the industry the CRM knows.
        (
            "customer_analysis",
            &[
                ("level", "segment"),
                ("group_by", "industry"),
                ("unify", "true"),
            ],
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
