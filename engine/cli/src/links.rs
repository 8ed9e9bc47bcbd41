//! `quarry links` and `quarry companies`: review the links the matching rules
//! made, decide about pairs, and look at a company with its members.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use quarry_db::companies::{self as co, Decision, LinkFilter};

#[derive(Subcommand, Debug)]
pub enum LinksAction {
    /// Links and decided pairs: proposals (waiting for review) first, best score first.
    List {
        /// Only pairs with this status: accepted, proposed, confirmed or rejected.
        #[arg(long)]
        status: Option<String>,
        /// Only links made by this rule (see mappings/companies.yaml), or `manual`.
        #[arg(long)]
        rule: Option<String>,
        /// Only pairs one side of which is this organization (organizations.id).
        #[arg(long)]
        organization: Option<i64>,
        /// Only pairs touching this company (companies.id).
        #[arg(long)]
        company: Option<i64>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The two organizations are one company, whatever the rules say.
    Confirm {
        /// organizations.id of one side.
        left: i64,
        /// organizations.id of the other side.
        right: i64,
        /// Why (kept with the decision).
        #[arg(long)]
        note: Option<String>,
    },
    /// The two organizations are different companies; no rule links them again.
    Reject {
        left: i64,
        right: i64,
        #[arg(long)]
        note: Option<String>,
    },
    /// Take an organization out of its company: every pair between it and the
    /// other members is rejected.
    Split {
        /// organizations.id.
        organization: i64,
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum CompaniesAction {
    /// One company: its golden values with their sources, its members, and the
    /// links between them.
    Show {
        /// companies.id, or `org:ID` for the company of an organization.
        id: String,
    },
    /// Register mappings/companies.yaml and recompute every link and company
    /// (done by `quarry ingest` when the rules changed; `--force` does it anyway).
    Rebuild {
        #[arg(long)]
        force: bool,
    },
    /// Recompute the links and companies of the organizations still queued
    /// (`quarry ingest` does it at the end of every run; this is for a run
    /// that stopped before).
    Resolve,
}

/// Who decides: `QUARRY_USER`, else the operating-system user.
fn who() -> String {
    std::env::var("QUARRY_USER")
        .or_else(|_| std::env::var("USER"))
        .ok()
        .filter(|u| !u.trim().is_empty())
        .map(|u| format!("cli:{u}"))
        .unwrap_or_else(|| "cli".to_string())
}

pub async fn links(database_url: &str, action: LinksAction) -> Result<ExitCode> {
    let mut client = quarry_db::connect(&quarry_db::writer_url(database_url)?).await?;
    match action {
        LinksAction::List {
            status,
            rule,
            organization,
            company,
            limit,
            json,
        } => {
            if let Some(s) = &status {
                if !co::STATUSES.contains(&s.as_str()) {
                    bail!("--status {s:?} is not one of {}", co::STATUSES.join(", "));
                }
            }
            let rows = co::list(
                &client,
                &LinkFilter {
                    status,
                    rule,
                    organization,
                    company,
                    limit,
                },
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = comfy_table::Table::new();
            t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
            t.set_header([
                "left", "right", "status", "score", "rules", "why", "company",
            ]);
            for r in &rows {
                t.add_row([
                    format!("{} {} ({})", r.left_id, r.left_name, r.left),
                    format!("{} {} ({})", r.right_id, r.right_name, r.right),
                    match &r.decided_by {
                        Some(by) => format!("{} by {by}", r.status),
                        None => r.status.clone(),
                    },
                    format!("{:.3}", r.score),
                    r.methods.join(", "),
                    r.reasons.join("; "),
                    r.company_id.map(|c| c.to_string()).unwrap_or_default(),
                ]);
            }
            println!(
                "{t}\n{} pair(s); `quarry links confirm|reject LEFT RIGHT` decides one, `quarry companies show ID` shows a company",
                rows.len()
            );
        }
        LinksAction::Confirm { left, right, note } => {
            let d = co::decide(
                &mut client,
                left,
                right,
                Decision::Confirm,
                &who(),
                note.as_deref(),
            )
            .await?;
            print_decided("confirmed", &d);
        }
        LinksAction::Reject { left, right, note } => {
            let d = co::decide(
                &mut client,
                left,
                right,
                Decision::Reject,
                &who(),
                note.as_deref(),
            )
            .await?;
            print_decided("rejected", &d);
        }
        LinksAction::Split { organization, note } => {
            let d = co::split(&mut client, organization, &who(), note.as_deref()).await?;
            print_decided("split (rejected)", &d);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_decided(what: &str, d: &co::Decided) {
    let pairs: Vec<String> = d.pairs.iter().map(|(l, r)| format!("{l}-{r}")).collect();
    println!("{what}: {}", pairs.join(", "));
    for (org, company) in &d.companies {
        println!("organization {org} is in company {company}");
    }
}

pub async fn companies(
    database_url: &str,
    mappings: &Path,
    action: CompaniesAction,
) -> Result<ExitCode> {
    let mut client = quarry_db::connect(&quarry_db::writer_url(database_url)?).await?;
    match action {
        CompaniesAction::Show { id } => {
            let company = match id.strip_prefix("org:") {
                Some(org) => {
                    let org: i64 = org
                        .parse()
                        .with_context(|| format!("{id:?}: org: takes an organizations.id"))?;
                    co::company_of(&client, org).await?.with_context(|| {
                        format!("organization {org} has no company (no such organization?)")
                    })?
                }
                None => id
                    .parse()
                    .with_context(|| format!("{id:?} is not a company id (or org:ID)"))?,
            };
            match co::show(&client, company).await? {
                Some(c) => println!("{}", serde_json::to_string_pretty(&c)?),
                None => bail!("no company {company}; `quarry companies show org:ID` finds the company of an organization"),
            }
        }
        CompaniesAction::Resolve => {
            let r = co::resolve_queue(&mut client).await?;
            if r.organizations > 0 {
                println!(
                    "links and companies of {} queued organization(s) recomputed",
                    r.organizations
                );
            } else {
                println!("nothing queued: every organization's company is up to date");
            }
        }
        CompaniesAction::Rebuild { force } => {
            let rules = crate::ingest::load_company_rules(mappings)?;
            let r = co::register(&mut client, &rules, force).await?;
            if r.changed {
                println!(
                    "rules {} registered: {} link(s), {} companies",
                    rules.version, r.links, r.companies
                );
            } else {
                println!(
                    "rules {} already registered; nothing recomputed (--force recomputes)",
                    rules.version
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
