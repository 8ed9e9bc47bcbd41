//! Companies across source systems, as data: `mappings/companies.yaml` declares
//! the matching rules that propose links between organizations of different
//! source systems (each with a score, and a blocking key so candidate pairs stay
//! near linear in the data) and the survivorship of each company field (which
//! source wins, in which order, or the most recent value).
//!
//! This module is the model and its checker (`quarry check` reports every
//! problem with file:line). The database half (`quarry_db::companies`) turns a
//! checked [`CompanyRules`] into set-based SQL: every expression it uses comes
//! from the closed vocabularies below, and every value (attribute keys, source
//! names, thresholds) is bound as a parameter.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::diag::{is_valid_name, parse_definition, yaml_key_position, Diagnostic};

/// The file name of the company rules inside the mappings folder. It is not a
/// mapping: a source system may not be called `companies`.
pub const FILE_NAME: &str = "companies.yaml";
/// The JSON Schema file editors validate `companies.yaml` with.
pub const SCHEMA: &str = "companies.schema.json";

/// `mappings/companies.yaml`: how organizations become companies.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CompanyRules {
    /// MAJOR.MINOR.PATCH of this rule set; recorded with every link it makes.
    pub version: String,
    /// What the rules are for, for reviewers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A link scoring at least this joins two organizations into one company
    /// without review; a lower one is a proposal until someone confirms it
    /// (`quarry links confirm`). Between 0 (exclusive) and 1.
    pub auto_accept: f64,
    /// The rules that propose links, each recorded under its name.
    pub rules: Vec<MatchRule>,
    /// Which member's value each company field takes.
    pub survivorship: Survivorship,
}

/// One matching rule: two organizations of different source systems whose
/// `field` is equal (or, for `similar`, similar enough) are linked with `score`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MatchRule {
    /// Name of the rule, recorded as the link's method (lower case, digits, `_`).
    pub name: String,
    /// `equal`: the normalised values are equal. `similar`: pg_trgm similarity
    /// of the normalised values at least `min_similarity`, compared only inside
    /// a block (`block_by`).
    pub kind: RuleKind,
    /// What is compared.
    pub field: MatchField,
    /// Score of a link this rule makes (0 exclusive to 1). For `similar`, the
    /// link's score is this times the similarity.
    pub score: f64,
    /// Fields that must also be equal (and present) on both sides, e.g. a name
    /// only counts within one country.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub same: Vec<BlockKey>,
    /// `similar` only: smallest similarity (0 to 1) that makes a link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_similarity: Option<f64>,
    /// `similar` only: the blocking key. Only organizations with equal values
    /// of every key listed are compared, so candidate pairs grow with the
    /// blocks, not with the square of the data.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub block_by: Vec<BlockKey>,
    /// A value (or block) shared by more organizations than this is no
    /// evidence: a public mail provider's domain, a common name. Default 20.
    #[serde(default = "default_max_group")]
    pub max_group: u32,
    /// Kinds of organization the rule compares (default: companies only).
    #[serde(default = "default_kinds")]
    pub kinds: Vec<OrgKind>,
    /// Only link organizations of these source systems (both sides); any when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<String>>,
}

fn default_max_group() -> u32 {
    20
}

fn default_kinds() -> Vec<OrgKind> {
    vec![OrgKind::Company]
}

/// How a rule compares.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// Equal normalised values.
    Equal,
    /// Trigram similarity within a block.
    Similar,
}

/// Kinds of organization.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OrgKind {
    /// `organizations.kind = 'company'`.
    Company,
    /// `organizations.kind = 'person'`.
    Person,
}

impl OrgKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OrgKind::Company => "company",
            OrgKind::Person => "person",
        }
    }
}

/// What a rule compares: an organization column, normalised, or an attribute.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MatchField {
    /// The name without case, punctuation and trailing legal forms (GmbH, Inc., ...).
    Name,
    /// The VAT id in upper case without spaces or punctuation.
    VatId,
    /// The domain of the e-mail address, lower case.
    EmailDomain,
    /// The host of the website without `www.`, lower case.
    Website,
    /// The phone number's digits.
    Phone,
    /// A key of `attributes` (a field the mapping kept without a column),
    /// compared trimmed and in lower case.
    Attribute(String),
}

impl MatchField {
    /// The link key a source's mapping declares (`link_by`) for this field; a
    /// rule on such a field links a pair only when one side's mapping declares
    /// it. Attributes and the other columns need no declaration.
    pub fn link_key(&self) -> Option<&'static str> {
        match self {
            MatchField::Name => Some("name_similarity"),
            MatchField::VatId => Some("vat_id"),
            MatchField::EmailDomain => Some("email_domain"),
            _ => None,
        }
    }

    /// A short word for reasons ("VAT", "e-mail domain").
    pub fn label(&self) -> String {
        match self {
            MatchField::Name => "name".into(),
            MatchField::VatId => "VAT".into(),
            MatchField::EmailDomain => "e-mail domain".into(),
            MatchField::Website => "website".into(),
            MatchField::Phone => "phone".into(),
            MatchField::Attribute(k) => format!("attribute {k}"),
        }
    }
}

/// Values organizations can be blocked by or required to share.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BlockKey {
    /// The ISO country code.
    CountryCode,
    /// The first word of the normalised name.
    NameFirstWord,
    /// The first three characters of the normalised name.
    NamePrefix3,
    /// The e-mail domain.
    EmailDomain,
    /// The city, lower case.
    City,
}

/// Company fields and where their values come from.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Survivorship {
    /// The strategy of every field not listed under `fields`.
    pub default: Strategy,
    /// Per field strategies.
    #[serde(default)]
    pub fields: IndexMap<GoldenField, Strategy>,
}

/// Which member's value a company field takes. Blank values never win.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Strategy {
    /// Source systems in order of preference: the value of the first one that
    /// has one wins; members of unlisted sources come after, most recent first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefer: Vec<String>,
    /// `true`: the most recently updated member's value wins (by the source's
    /// change time, then the time Quarry stored it), after `prefer` if both are
    /// given.
    #[serde(default)]
    pub most_recent: bool,
}

/// The fields of a company's golden row (each an organizations column).
#[derive(
    Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "snake_case")]
pub enum GoldenField {
    Name,
    LegalName,
    Industry,
    CountryCode,
    City,
    Tier,
    AccountType,
    EmailDomain,
    VatId,
    Website,
    Phone,
    AnnualRevenue,
    EmployeeCount,
}

impl GoldenField {
    /// Every field, in the column order of `canonical.companies`.
    pub const ALL: [GoldenField; 13] = [
        GoldenField::Name,
        GoldenField::LegalName,
        GoldenField::Industry,
        GoldenField::CountryCode,
        GoldenField::City,
        GoldenField::Tier,
        GoldenField::AccountType,
        GoldenField::EmailDomain,
        GoldenField::VatId,
        GoldenField::Website,
        GoldenField::Phone,
        GoldenField::AnnualRevenue,
        GoldenField::EmployeeCount,
    ];

    /// The column, in `canonical.organizations` and `canonical.companies` alike.
    pub fn column(self) -> &'static str {
        match self {
            GoldenField::Name => "name",
            GoldenField::LegalName => "legal_name",
            GoldenField::Industry => "industry",
            GoldenField::CountryCode => "country_code",
            GoldenField::City => "city",
            GoldenField::Tier => "tier",
            GoldenField::AccountType => "account_type",
            GoldenField::EmailDomain => "email_domain",
            GoldenField::VatId => "vat_id",
            GoldenField::Website => "website",
            GoldenField::Phone => "phone",
            GoldenField::AnnualRevenue => "annual_revenue",
            GoldenField::EmployeeCount => "employee_count",
        }
    }
}

impl CompanyRules {
    /// The strategy of `field`.
    pub fn strategy(&self, field: GoldenField) -> &Strategy {
        self.survivorship
            .fields
            .get(&field)
            .unwrap_or(&self.survivorship.default)
    }

    /// A stable fingerprint of the rules (sha256 of their JSON): a database
    /// whose links were made by other rules recomputes them all.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(json))
    }

    /// Reads and checks a rules file's text. Problems come back with file:line.
    pub fn check(file: &str, text: &str) -> (Option<CompanyRules>, Vec<Diagnostic>) {
        let mut d = Vec::new();
        let Some(rules) =
            parse_definition::<CompanyRules>(file, text, "company rules", SCHEMA, &mut d)
        else {
            return (None, d);
        };
        let at = |path: &[&str]| yaml_key_position(text, path);
        let rule_at = |i: usize, key: &str| rule_position(text, i, key);
        if !crate::is_semver(&rules.version) {
            d.push(Diagnostic::new(
                file,
                at(&["version"]),
                format!("version `{}` is not MAJOR.MINOR.PATCH", rules.version),
            ));
        }
        if !(rules.auto_accept > 0.0 && rules.auto_accept <= 1.0) {
            d.push(
                Diagnostic::new(
                    file,
                    at(&["auto_accept"]),
                    format!("auto_accept {} is not in (0, 1]", rules.auto_accept),
                )
                .help("links scoring at least auto_accept join companies without review; 0.9 is a usual value"),
            );
        }
        if rules.rules.is_empty() {
            d.push(
                Diagnostic::new(
                    file,
                    at(&["rules"]),
                    "no matching rules: no company would ever have more than one member",
                )
                .help(
                    "add a rule such as `{name: vat_id, kind: equal, field: vat_id, score: 1.0}`",
                ),
            );
        }
        for (i, r) in rules.rules.iter().enumerate() {
            if !is_valid_name(&r.name) || r.name == "manual" {
                d.push(
                    Diagnostic::new(
                        file,
                        rule_at(i, "name"),
                        format!("rule name `{}` is not valid", r.name),
                    )
                    .help("use lower case letters, digits and underscores, starting with a letter; `manual` is kept for links people confirm"),
                );
            }
            if let Some(j) = rules.rules[..i].iter().position(|o| o.name == r.name) {
                d.push(Diagnostic::new(
                    file,
                    rule_at(i, "name"),
                    format!(
                        "rule `{}` is declared twice (also rule {} at line {})",
                        r.name,
                        j + 1,
                        rule_at(j, "name").0
                    ),
                ));
            }
            if !(r.score > 0.0 && r.score <= 1.0) {
                d.push(Diagnostic::new(
                    file,
                    rule_at(i, "score"),
                    format!("rule `{}`: score {} is not in (0, 1]", r.name, r.score),
                ));
            }
            if let MatchField::Attribute(k) = &r.field {
                if k.trim().is_empty() || k.len() > 200 {
                    d.push(Diagnostic::new(
                        file,
                        rule_at(i, "field"),
                        format!(
                            "rule `{}`: the attribute key must be 1 to 200 characters",
                            r.name
                        ),
                    ));
                }
            }
            if r.max_group < 2 {
                d.push(
                    Diagnostic::new(
                        file,
                        rule_at(i, "max_group"),
                        format!("rule `{}`: max_group {} links nothing", r.name, r.max_group),
                    )
                    .help("a value must be shared by at least two organizations to link them"),
                );
            }
            if r.kinds.is_empty() {
                d.push(Diagnostic::new(
                    file,
                    rule_at(i, "kinds"),
                    format!("rule `{}`: kinds is empty, so it compares nothing", r.name),
                ));
            }
            for s in r.sources.iter().flatten() {
                if !is_valid_name(s) {
                    d.push(Diagnostic::new(
                        file,
                        rule_at(i, "sources"),
                        format!("rule `{}`: `{s}` is not a source system name", r.name),
                    ));
                }
            }
            match r.kind {
                RuleKind::Equal => {
                    if r.min_similarity.is_some() || !r.block_by.is_empty() {
                        d.push(
                            Diagnostic::new(
                                file,
                                rule_at(
                                    i,
                                    if r.min_similarity.is_some() {
                                        "min_similarity"
                                    } else {
                                        "block_by"
                                    },
                                ),
                                format!("rule `{}`: min_similarity and block_by belong to `kind: similar`", r.name),
                            )
                            .help("an equal rule is blocked by its own value; use `same:` for fields that must also be equal"),
                        );
                    }
                }
                RuleKind::Similar => {
                    match r.min_similarity {
                        Some(s) if s > 0.0 && s <= 1.0 => {}
                        Some(s) => d.push(Diagnostic::new(
                            file,
                            rule_at(i, "min_similarity"),
                            format!("rule `{}`: min_similarity {s} is not in (0, 1]", r.name),
                        )),
                        None => d.push(
                            Diagnostic::new(
                                file,
                                rule_at(i, "kind"),
                                format!("rule `{}`: a similar rule needs min_similarity", r.name),
                            )
                            .help("add `min_similarity: 0.7` (pg_trgm similarity of the normalised values)"),
                        ),
                    }
                    if r.block_by.is_empty() {
                        d.push(
                            Diagnostic::new(
                                file,
                                rule_at(i, "kind"),
                                format!("rule `{}`: a similar rule needs block_by", r.name),
                            )
                            .help("compare only within blocks, e.g. `block_by: [country_code, name_first_word]`: without one every pair of organizations is compared (2.6 M links at 100k records)"),
                        );
                    }
                    if !matches!(r.field, MatchField::Name | MatchField::Attribute(_)) {
                        d.push(Diagnostic::new(
                            file,
                            rule_at(i, "field"),
                            format!("rule `{}`: similarity applies to names and attributes; compare {} with `kind: equal`", r.name, r.field.label()),
                        ));
                    }
                }
            }
        }
        let mut check_strategy = |s: &Strategy, path: &[&str]| {
            if s.prefer.is_empty() && !s.most_recent {
                d.push(
                    Diagnostic::new(
                        file,
                        at(path),
                        "a strategy needs `prefer` or `most_recent: true`",
                    )
                    .help("e.g. `{prefer: [crm, erp, shop]}` or `{most_recent: true}`"),
                );
            }
            for (k, p) in s.prefer.iter().enumerate() {
                if !is_valid_name(p) {
                    d.push(Diagnostic::new(
                        file,
                        at(path),
                        format!("`{p}` is not a source system name"),
                    ));
                } else if s.prefer[..k].contains(p) {
                    d.push(Diagnostic::new(
                        file,
                        at(path),
                        format!("source `{p}` is listed twice in prefer"),
                    ));
                }
            }
        };
        check_strategy(&rules.survivorship.default, &["survivorship", "default"]);
        for (f, s) in &rules.survivorship.fields {
            check_strategy(s, &["survivorship", "fields", f.column()]);
        }
        (Some(rules), d)
    }
}

/// Line and column of key `key` of the `i`-th rule (0-based) in block style
/// (`- name: ...` items under `rules:`), or of `rules:` when not found.
fn rule_position(text: &str, i: usize, key: &str) -> (usize, usize) {
    let fallback = yaml_key_position(text, &["rules"]);
    let lines: Vec<&str> = text.lines().collect();
    let Some(start) = lines.iter().position(|l| l.starts_with("rules:")) else {
        return fallback;
    };
    let mut item = None;
    let mut seen = 0;
    for (n, line) in lines.iter().enumerate().skip(start + 1) {
        let t = line.trim_start();
        if !line.starts_with(' ') && !line.starts_with('-') && !t.is_empty() && !t.starts_with('#')
        {
            break; // the next top-level key
        }
        if t.starts_with("- ") {
            if seen == i {
                item = Some(n);
            } else if item.is_some() {
                break;
            }
            seen += 1;
        }
        if let Some(first) = item {
            let bare = t.trim_start_matches("- ");
            if bare.starts_with(&format!("{key}:")) {
                return (n + 1, line.len() - bare.len() + 1);
            }
            if n > first && t.starts_with("- ") {
                break;
            }
        }
    }
    item.map_or(fallback, |n| {
        (n + 1, lines[n].len() - lines[n].trim_start().len() + 1)
    })
}

/// The JSON Schema of `companies.yaml` (`schemas/companies.schema.json`).
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(CompanyRules)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "# yaml-language-server: $schema=../schemas/companies.schema.json\n";

    #[test]
    fn the_shipped_rules_check_clean() {
        let text = include_str!("../../../mappings/companies.yaml");
        let (rules, d) = CompanyRules::check("mappings/companies.yaml", text);
        assert!(d.is_empty(), "{d:?}");
        let rules = rules.expect("parsed");
        assert!(rules.rules.iter().any(|r| r.kind == RuleKind::Similar));
        assert_eq!(rules.strategy(GoldenField::Industry).prefer[0], "crm");
    }

    #[test]
    fn mistakes_are_placed_on_their_line() {
        let text = format!(
            "{HEADER}version: 1.0.0\nauto_accept: 1.5\nrules:\n  - name: vat\n    kind: equal\n    field: vat_id\n    score: 1.0\n  - name: fuzzy\n    kind: similar\n    field: name\n    score: 0.8\n    min_similarity: 0.7\n  - name: vat\n    kind: equal\n    field: email_domain\n    score: 2\nsurvivorship:\n  default: {{prefer: [crm, crm]}}\n"
        );
        let (_, d) = CompanyRules::check("companies.yaml", &text);
        let shown: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        let has = |needle: &str, line: usize| {
            d.iter()
                .any(|x| x.message.contains(needle) && x.line == line)
        };
        assert!(has("auto_accept 1.5", 3), "{shown:#?}");
        assert!(has("needs block_by", 10), "{shown:#?}");
        assert!(has("declared twice", 14), "{shown:#?}");
        assert!(has("score 2", 17), "{shown:#?}");
        assert!(has("listed twice", 19), "{shown:#?}");
    }

    #[test]
    fn unknown_keys_are_refused_with_their_line() {
        let text = format!(
            "{HEADER}version: 1.0.0\nauto_accept: 0.9\nrules:\n  - name: vat\n    kind: equal\n    field: vat_id\n    scor: 1.0\nsurvivorship:\n  default: {{most_recent: true}}\n"
        );
        let (rules, d) = CompanyRules::check("companies.yaml", &text);
        assert!(rules.is_none());
        assert!(d[0].message.contains("scor"), "{d:?}");
        assert_eq!(d[0].line, 8, "{d:?}");
    }
}
