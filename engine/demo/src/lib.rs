//! # quarry-demo
//!
//! A deterministic generator of source-system exports, behind `quarry demo-data`
//! and `quarry demo`.
//!
//! It writes the same shapes the three source systems export (Salesforce REST query
//! results, SAP OData v2 documents, Shopify order NDJSON) into a bucket-like folder
//! tree, with a fixed set of deliberate defects, plus `expected.json`: what a correct
//! load of those files must produce (per-file counts, quarantine reasons, final row
//! counts, exact money sums).
//!
//! Properties:
//! - **Deterministic**: every record is a pure function of `(seed, stream, index)`
//!   through a small SplitMix64 generator of our own (no dependency on a library's
//!   algorithm choices), so the same scale and seed give byte-identical files.
//! - **Streaming**: records are written one by one through a `BufWriter`; references
//!   (ParentId, AccountId, SoldToParty, the `ap@` e-mail of a shop buyer) are
//!   recomputed from the index of the referenced record instead of being kept in
//!   memory. The only state that grows with the scale is a bit set over the shop
//!   customer pool (scale / 10 bits).
//! - **Exact money**: amounts are integer cents; JSON floats are built as
//!   `cents / 100`, which serde_json prints in shortest round-trip form (≤ 2 decimals).
//!
//! Defect positions are counted 1-based within each file (`p = index + 1`):
//!
//! | file | position | defect | reason code |
//! | --- | --- | --- | --- |
//! | accounts-2024-06-01-00 | `p % 50 == 0` | no `Id` key (and `attributes.url` null) | `missing_key` |
//! | accounts-2024-06-01-00 | `p % 50 == 25` | `Name` is `"   "` | `blank` |
//! | accounts-2024-07-01-00 | every record | K accounts re-sent twice: newer (+30 days, other tier) and stale (−30 days, `Bronze-STALE`), alternating which comes first | updated / stale |
//! | opportunities | `p % 50 == 0` | `Amount` is the string `"twelve thousand"` | `invalid_number` |
//! | customers | `p % 50 == 0` | `Customer` `""` and `CreationDate` `/Date(garbage)/` | `missing_key` |
//! | sales-orders | `p % 50 == 0` | first item has `RequestedQuantity` `"-3.000"` | `out_of_range` (whole order) |
//! | shop orders | line `p % 100 == 0` | truncated JSON (`{"id": 450789100, "name": "#10`) | `invalid_json` |

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::ser::Formatter;

/// Options of one generation run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenOptions {
    /// Approximate total number of top-level records over all files.
    pub scale: u64,
    /// Seed of the pseudo-random choices; same scale and seed give identical files.
    pub seed: u64,
}

/// What a correct load of the generated files must produce (written as `expected.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Expected {
    /// The scale the files were generated with.
    pub scale: u64,
    /// The seed the files were generated with.
    pub seed: u64,
    /// One entry per file, in load order (lexicographic by key).
    pub files: Vec<ExpectedFile>,
    /// Final row count per canonical table: organizations, products, orders,
    /// order_lines, opportunities.
    pub rows: BTreeMap<String, u64>,
    /// Organizations at version 2 after the load (the re-sent accounts).
    pub versioned_organizations: u64,
    /// Exact sum (2 decimals) of `total_amount` over the loaded orders
    /// (SAP `TotalNetAmount` plus Shopify `total_price`).
    pub orders_total_amount: String,
    /// Exact sum (2 decimals) of the loaded opportunities' `Amount`s.
    pub opportunities_amount: String,
}

/// The expected load report of one file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExpectedFile {
    /// Object key relative to the bucket root, e.g. `crm-data/accounts-2024-06-01-00.json`.
    pub key: String,
    /// Top-level records in the file, unparsable NDJSON lines included.
    pub records_read: u64,
    /// Records whose key was new.
    pub inserted: u64,
    /// Records that applied a newer version of a stored row.
    pub updated: u64,
    /// Records identical to what is stored.
    pub unchanged: u64,
    /// Records older than the stored version (counted, not applied).
    pub stale: u64,
    /// Quarantined records per reason code (only reasons that occur).
    pub quarantined: BTreeMap<String, u64>,
}

/// Object keys of the generated files, in load order.
pub const ACCOUNTS_KEY: &str = "crm-data/accounts-2024-06-01-00.json";
/// The second accounts file: re-sent accounts (newer and stale versions).
pub const ACCOUNTS_RESEND_KEY: &str = "crm-data/accounts-2024-07-01-00.json";
/// Salesforce opportunities.
pub const OPPORTUNITIES_KEY: &str = "crm-data/opportunities-2024-06-01-00.json";
/// SAP customers.
pub const CUSTOMERS_KEY: &str = "erp-data/customers-2024-06-01-00.json";
/// SAP sales orders with nested items.
pub const SALES_ORDERS_KEY: &str = "erp-data/sales-orders-2024-06-01-00.json";
/// Shopify orders, one per line.
pub const SHOP_ORDERS_KEY: &str = "shop-data/orders-2024-06-01-00.ndjson";
/// The expected outcome, next to the data folders.
pub const EXPECTED_FILE: &str = "expected.json";
/// Which records are the same real-world company (`source_system,source_id,company`),
/// next to `expected.json`: the truth link precision and recall are measured against.
pub const COMPANIES_TRUTH_FILE: &str = "expected-companies.csv";

/// Reason code: the record has no usable key.
pub const REASON_MISSING_KEY: &str = "missing_key";
/// Reason code: a required text field is blank.
pub const REASON_BLANK: &str = "blank";
/// Reason code: a number field holds something that is not a number.
pub const REASON_INVALID_NUMBER: &str = "invalid_number";
/// Reason code: a value outside its allowed range (negative quantity).
pub const REASON_OUT_OF_RANGE: &str = "out_of_range";
/// Reason code: an NDJSON line that is not JSON.
pub const REASON_INVALID_JSON: &str = "invalid_json";

/// Generates the export tree under `out` (created if missing; existing files are
/// overwritten) and returns what a correct load of it must produce, which is also
/// written to `out/expected.json`.
///
/// Writes `crm-data/accounts-2024-06-01-00.json`, `crm-data/accounts-2024-07-01-00.json`,
/// `crm-data/opportunities-2024-06-01-00.json`, `erp-data/customers-2024-06-01-00.json`,
/// `erp-data/sales-orders-2024-06-01-00.json` and `shop-data/orders-2024-06-01-00.ndjson`.
/// Same scale and seed give byte-identical files; memory stays small at any scale.
pub fn generate(out: &Path, opts: &GenOptions) -> Result<Expected> {
    let plan = Plan::new(opts.scale);
    let seed = opts.seed;
    for dir in ["crm-data", "erp-data", "shop-data"] {
        let path = out.join(dir);
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
    }
    let mut files = Vec::with_capacity(6);
    let mut rows = Rows::default();

    files.push(write_file(out, ACCOUNTS_KEY, |w| {
        write_accounts(w, seed, &plan, &mut rows)
    })?);
    files.push(write_file(out, ACCOUNTS_RESEND_KEY, |w| {
        write_account_resends(w, seed, &plan)
    })?);
    files.push(write_file(out, OPPORTUNITIES_KEY, |w| {
        write_opportunities(w, seed, &plan, &mut rows)
    })?);
    files.push(write_file(out, CUSTOMERS_KEY, |w| {
        write_customers(w, seed, &plan, &mut rows)
    })?);
    files.push(write_file(out, SALES_ORDERS_KEY, |w| {
        write_sales_orders(w, seed, &plan, &mut rows)
    })?);
    files.push(write_file(out, SHOP_ORDERS_KEY, |w| {
        write_shop_orders(w, seed, &plan, &mut rows)
    })?);

    let path = out.join(COMPANIES_TRUTH_FILE);
    let mut w = BufWriter::new(
        File::create(&path).with_context(|| format!("creating {}", path.display()))?,
    );
    write_company_truth(&mut w, seed, &plan)
        .and_then(|()| w.flush())
        .with_context(|| format!("writing {}", path.display()))?;

    let expected = Expected {
        scale: opts.scale,
        seed,
        files,
        rows: BTreeMap::from([
            ("organizations".to_string(), rows.organizations),
            (
                "products".to_string(),
                u64::from(rows.erp_skus.count_ones() + rows.shop_skus.count_ones()),
            ),
            ("orders".to_string(), rows.orders),
            ("order_lines".to_string(), rows.order_lines),
            ("opportunities".to_string(), rows.opportunities),
        ]),
        versioned_organizations: plan.resent,
        orders_total_amount: cents_str(rows.orders_cents),
        opportunities_amount: cents_str(rows.opportunities_cents),
    };
    let path = out.join(EXPECTED_FILE);
    let mut text = serde_json::to_string_pretty(&expected).context("serializing expected.json")?;
    text.push('\n');
    fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(expected)
}

// ---------------------------------------------------------------------------------
// Sizes and defect positions
// ---------------------------------------------------------------------------------

/// How many records of each kind a scale produces.
#[derive(Debug, Clone, Copy)]
struct Plan {
    accounts: u64,
    opportunities: u64,
    customers: u64,
    sales_orders: u64,
    shop_orders: u64,
    /// Size of the pool of Shopify customers the orders draw from.
    shop_customers: u64,
    /// K: valid accounts re-sent (twice each) in the second accounts file.
    resent: u64,
}

/// Smallest number of records of each kind.
const MIN_RECORDS: u64 = 10;

impl Plan {
    fn new(scale: u64) -> Plan {
        let part = |percent: u64| (scale.saturating_mul(percent) / 100).max(MIN_RECORDS);
        let accounts = part(20);
        let valid_accounts = accounts - count_at(accounts, 50, 0) - count_at(accounts, 50, 25);
        Plan {
            accounts,
            opportunities: part(30),
            customers: part(10),
            sales_orders: part(20),
            shop_orders: part(20),
            shop_customers: part(10),
            resent: (valid_accounts * 5 / 100).max(2),
        }
    }
}

/// Number of 1-based positions `p` in `1..=n` with `p % period == offset`.
fn count_at(n: u64, period: u64, offset: u64) -> u64 {
    if offset == 0 {
        n / period
    } else if n >= offset {
        (n - offset) / period + 1
    } else {
        0
    }
}

/// Whether the 0-based `index` is at 1-based position `p % period == offset`.
fn at(index: u64, period: u64, offset: u64) -> bool {
    (index + 1) % period == offset
}

/// Account with no `Id`.
fn account_missing_id(i: u64) -> bool {
    at(i, 50, 0)
}

/// Account with a blank `Name`.
fn account_blank_name(i: u64) -> bool {
    at(i, 50, 25)
}

/// An account that loads (not quarantined). Quarantined accounts all have
/// `i % 5 == 4`, so `i - 1` of an invalid account is always valid.
fn account_valid(i: u64) -> bool {
    !account_missing_id(i) && !account_blank_name(i)
}

/// The valid account nearest at or below `i`.
fn valid_account_at(i: u64) -> u64 {
    if account_valid(i) {
        i
    } else {
        i - 1
    }
}

/// Opportunity whose `Amount` is text.
fn opportunity_bad(j: u64) -> bool {
    at(j, 50, 0)
}

/// SAP customer with an empty `Customer` and a broken date.
fn customer_bad(c: u64) -> bool {
    at(c, 50, 0)
}

/// SAP order with a negative quantity on its first item.
fn sales_order_bad(o: u64) -> bool {
    at(o, 50, 0)
}

/// Shopify NDJSON line that is cut off.
fn shop_line_bad(s: u64) -> bool {
    at(s, 100, 0)
}

/// Shopify customer that buys from an accounts-payable address of a CRM company.
fn shop_customer_is_company(k: u64) -> bool {
    at(k, 10, 0)
}

/// `floor(a * b / c)` without overflow (`c > 0`).
fn scaled(a: u64, b: u64, c: u64) -> u64 {
    ((u128::from(a) * u128::from(b)) / u128::from(c.max(1))) as u64
}

// ---------------------------------------------------------------------------------
// Deterministic randomness
// ---------------------------------------------------------------------------------

/// The SplitMix64 finalizer: a bijective 64-bit mixer.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// Independent streams of randomness, one per kind of record.
#[derive(Clone, Copy)]
enum Stream {
    Account = 1,
    Resend = 2,
    Opportunity = 3,
    Customer = 4,
    SalesOrder = 5,
    ShopOrder = 6,
    ShopCustomer = 7,
    AccountIds = 8,
    OpportunityIds = 9,
}

/// SplitMix64: tiny, fast, and fully specified here, so output never depends on a
/// library's algorithm choices.
struct Rng(u64);

impl Rng {
    /// The generator of record `index` of `stream`.
    fn new(seed: u64, stream: Stream, index: u64) -> Rng {
        let base = mix(seed ^ (stream as u64).wrapping_mul(GOLDEN));
        Rng(mix(base ^ mix(index.wrapping_add(GOLDEN))))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    /// Uniform in `0..n` (`0` when `n == 0`).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `num / den`.
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// One element of a non-empty constant table.
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

// ---------------------------------------------------------------------------------
// Reference tables
// ---------------------------------------------------------------------------------

/// A country: English name (Salesforce), ISO code (SAP) and a billing city.
#[derive(Debug, Clone, Copy)]
struct Country {
    name: &'static str,
    code: &'static str,
    city: &'static str,
}

const fn country(name: &'static str, code: &'static str, city: &'static str) -> Country {
    Country { name, code, city }
}

const COUNTRIES: [Country; 15] = [
    country("Germany", "DE", "München"),
    country("France", "FR", "Paris"),
    country("United States", "US", "New York"),
    country("Japan", "JP", "Tokyo"),
    country("Switzerland", "CH", "Zürich"),
    country("Canada", "CA", "Montréal"),
    country("Brazil", "BR", "São Paulo"),
    country("United Kingdom", "GB", "London"),
    country("Spain", "ES", "Málaga"),
    country("Italy", "IT", "Milano"),
    country("Netherlands", "NL", "Amsterdam"),
    country("Australia", "AU", "Sydney"),
    country("India", "IN", "Mumbai"),
    country("Mexico", "MX", "Ciudad de México"),
    country("Sweden", "SE", "Göteborg"),
];

/// A product: SKU, name (SAP item text = Shopify title) and fixed unit price.
#[derive(Debug, Clone, Copy)]
struct Product {
    sku: &'static str,
    title: &'static str,
    price_cents: i64,
}

const fn product(sku: &'static str, title: &'static str, price_cents: i64) -> Product {
    Product {
        sku,
        title,
        price_cents,
    }
}

const PRODUCTS: [Product; 12] = [
    product("SKU-0001", "Industrial Sensor", 24900),
    product("SKU-0002", "Edge Gateway", 129900),
    product("SKU-0003", "Analytics Seat", 8990),
    product("SKU-0004", "Support Plan", 49900),
    product("SKU-0005", "Install Kit", 3995),
    product("SKU-0006", "Cloud Storage 1TB", 1999),
    product("SKU-0007", "Training Day", 120000),
    product("SKU-0008", "Spare Battery", 1450),
    product("SKU-0009", "API Add-on", 14900),
    product("SKU-0010", "Consulting Hour", 18000),
    product("SKU-0011", "Mounting Bracket", 2450),
    product("SKU-0012", "Extended Warranty", 9900),
];

const ASCII_WORDS: [&str; 20] = [
    "Tyrell",
    "Tailspin",
    "Yoyodyne",
    "Weyland",
    "Vandelay",
    "Adventure",
    "Rekall",
    "Fabrikam",
    "Woodgrove",
    "Blue Sun",
    "Gringotts",
    "Initech",
    "Umbrella",
    "Oscorp",
    "Contoso",
    "Litware",
    "Northwind",
    "Globex",
    "Soylent",
    "Wonka",
];

/// Company words with non-ASCII letters; every fifth account starts with one.
const UNICODE_WORDS: [&str; 8] = [
    "Müller",
    "Åkesson",
    "Nguyễn",
    "São Paulo",
    "Zürich",
    "Çelik",
    "Øresund",
    "Dvořák",
];

const COMPANY_SUFFIXES: [&str; 10] = [
    "Holdings", "Inc.", "GmbH", "Ltd", "S.A.", "Partners", "Group", "LLC", "Corp.", "AB",
];

const INDUSTRIES: [&str; 10] = [
    "Education",
    "Finance",
    "Logistics",
    "Technology",
    "Media",
    "Energy",
    "Retail",
    "Healthcare",
    "Manufacturing",
    "Hospitality",
];

const ACCOUNT_TYPES: [&str; 3] = ["Customer - Direct", "Customer - Channel", "Prospect"];

const TIERS: [&str; 4] = ["Platinum", "Gold", "Silver", "Bronze"];

/// Tier of the stale re-sent accounts.
const STALE_TIER: &str = "Bronze-STALE";

/// (StageName, Probability, IsClosed, IsWon).
const STAGES: [(&str, u32, bool, bool); 6] = [
    ("Prospecting", 10, false, false),
    ("Qualification", 20, false, false),
    ("Proposal/Price Quote", 60, false, false),
    ("Negotiation/Review", 80, false, false),
    ("Closed Won", 100, true, true),
    ("Closed Lost", 0, true, false),
];

const OPPORTUNITY_KINDS: [&str; 4] = ["Renewal", "New Logo", "Pilot", "Expansion"];

const FIRST_NAMES: [&str; 15] = [
    "Ana", "Gus", "Dara", "Hana", "José", "Zoë", "Björn", "Chloé", "Mateo", "Priya", "Liam",
    "Søren", "Ngọc", "Emma", "Yuki",
];

const LAST_NAMES: [&str; 15] = [
    "García",
    "Larsen",
    "Okafor",
    "Rossi",
    "Smith",
    "Tanaka",
    "Müller",
    "Åkesson",
    "Nguyễn",
    "Dubois",
    "Kowalski",
    "Silva",
    "Johansson",
    "Patel",
    "Brown",
];

/// UTC offsets (seconds) of Shopify timestamps.
const SHOP_OFFSETS: [i64; 6] = [0, 3600, -5 * 3600, 9 * 3600, -4 * 3600, 5 * 3600 + 1800];

const FINANCIAL_STATUSES: [&str; 6] = ["paid", "paid", "paid", "pending", "pending", "refunded"];

const SD_STATUSES: [&str; 3] = ["A", "B", "C"];

const CURRENCY: &str = "USD";
const SHOP_VENDOR: &str = "Quarry Demo";

/// 2023-01-01T00:00:00Z.
const EPOCH_2023: i64 = 1_672_531_200;
const DAY: i64 = 86_400;

// ---------------------------------------------------------------------------------
// Formatting helpers
// ---------------------------------------------------------------------------------

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m as u32, d as u32)
}

/// `YYYY-MM-DDTHH:MM:SS` of Unix seconds (UTC).
fn iso_seconds(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(DAY));
    let t = secs.rem_euclid(DAY);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// Salesforce timestamp: `2024-06-01T09:26:53.000+0000`.
fn sf_timestamp(secs: i64) -> String {
    format!("{}.000+0000", iso_seconds(secs))
}

/// Plain date `YYYY-MM-DD`.
fn plain_date(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(DAY));
    format!("{y:04}-{m:02}-{d:02}")
}

/// SAP OData v2 date: `/Date(1678441062000)/`.
fn sap_date(secs: i64) -> String {
    format!("/Date({})/", secs * 1000)
}

/// Shopify timestamp in local time with its UTC offset: `2024-10-13T11:55:34-04:00`.
fn shop_timestamp(secs: i64, offset: i64) -> String {
    let sign = if offset < 0 { '-' } else { '+' };
    let abs = offset.abs();
    format!(
        "{}{sign}{:02}:{:02}",
        iso_seconds(secs + offset),
        abs / 3600,
        abs / 60 % 60
    )
}

/// Cents as a decimal string with 2 places: `-1234` → `"-12.34"`.
fn cents_str(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// Cents as a JSON float. `cents / 100` is the double nearest to the decimal value,
/// and serde_json prints the shortest text that round-trips, so the JSON shows at most
/// two decimals (`41856000.0`, `64177.6`, `467574.39`) for any amount below 2^53 / 100.
fn money_f64(cents: i64) -> f64 {
    cents as f64 / 100.0
}

/// Lower-case ASCII letters and digits of a word: `Nguyễn` → `nguyn` (as the samples do).
fn slug(word: &str) -> String {
    word.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Salesforce-style 18-character id: a 5-character key prefix (`0015g` accounts,
/// `0065g` opportunities), 10 base-62 characters that are a bijection of `index`
/// (so ids never collide), and the `AAA` case-safety suffix.
fn sf_id(prefix: &str, seed: u64, stream: Stream, index: u64) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    const SPACE: u64 = 839_299_365_868_340_224; // 62^10
                                                // An odd multiplier that is not a multiple of 31 is invertible modulo 62^10.
    const MULTIPLIER: u64 = (0x2545_f491_4f6c_dd1d % SPACE) | 1;
    let offset = u128::from(mix(seed ^ (stream as u64).wrapping_mul(GOLDEN)) % SPACE);
    let space = u128::from(SPACE);
    let mut v = (u128::from(index) * u128::from(MULTIPLIER) + offset) % space;
    let mut digits = [b'0'; 10];
    for slot in digits.iter_mut().rev() {
        *slot = ALPHABET[(v % 62) as usize];
        v /= 62;
    }
    let mut id = String::with_capacity(18);
    id.push_str(prefix);
    id.extend(digits.iter().map(|&b| char::from(b)));
    id.push_str("AAA");
    id
}

/// Id of account `i`.
fn account_id(seed: u64, i: u64) -> String {
    sf_id("0015g", seed, Stream::AccountIds, i)
}

/// SAP customer number of customer `c`: 10 digits with leading zeros.
fn customer_number(c: u64) -> String {
    format!("{:010}", 100_000 + c)
}

/// A company name and the word its domain is made from.
fn company_name(rng: &mut Rng, non_ascii: bool) -> (String, &'static str) {
    let first = if non_ascii {
        rng.pick(&UNICODE_WORDS)
    } else {
        rng.pick(&ASCII_WORDS)
    };
    let mut name = String::from(first);
    if rng.chance(1, 3) {
        name.push(' ');
        name.push_str(rng.pick(&ASCII_WORDS));
    }
    name.push(' ');
    name.push_str(rng.pick(&COMPANY_SUFFIXES));
    (name, first)
}

/// How SAP spells a company name: upper case, `INC` without the dot,
/// `CORP.` written out (`Müller Inc.` → `MÜLLER INC`).
fn sap_name(name: &str) -> String {
    let upper = name.to_uppercase();
    if let Some(stem) = upper.strip_suffix(" INC.") {
        format!("{stem} INC")
    } else if let Some(stem) = upper.strip_suffix(" CORP.") {
        format!("{stem} CORPORATION")
    } else {
        upper
    }
}

// ---------------------------------------------------------------------------------
// Entities as pure functions of their index
// ---------------------------------------------------------------------------------

/// A Salesforce account: a pure function of `(seed, i)`, so references to it can
/// be recomputed instead of remembered.
struct Account {
    id: String,
    name: String,
    domain: String,
    industry: &'static str,
    revenue_cents: i64,
    employees: u32,
    country: Country,
    city: Option<&'static str>,
    kind: &'static str,
    parent: Option<u64>,
    created: i64,
    modified: i64,
    tier: &'static str,
}

impl Account {
    fn new(seed: u64, i: u64) -> Account {
        let mut rng = Rng::new(seed, Stream::Account, i);
        let (name, word) = company_name(&mut rng, i % 5 == 2);
        let domain = format!("{}{i}.example", slug(word));
        let thousands = rng.range(1_000, 99_999) as i64;
        // Every 7th revenue has cents, to exercise float-to-numeric rounding.
        let revenue_cents = if i % 7 == 3 {
            thousands * 100_000 + rng.range(1, 99_999) as i64
        } else {
            thousands * 100_000
        };
        let country = rng.pick(&COUNTRIES);
        let city = rng.chance(2, 3).then_some(country.city);
        let created = EPOCH_2023 + rng.below(200) as i64 * DAY + rng.below(DAY as u64) as i64;
        let modified = created + rng.below(270) as i64 * DAY;
        Account {
            id: account_id(seed, i),
            name,
            domain,
            industry: rng.pick(&INDUSTRIES),
            revenue_cents,
            employees: rng.range(50, 20_000) as u32,
            country,
            city,
            kind: rng.pick(&ACCOUNT_TYPES),
            parent: account_parent(&mut rng, i),
            created,
            modified,
            tier: rng.pick(&TIERS),
        }
    }

    /// `ap@<domain>`: the accounts-payable address shared with SAP and Shopify.
    fn ap_email(&self) -> String {
        format!("ap@{}", self.domain)
    }
}

/// Parent of account `i`: every 5th account (`i % 5 == 4`) has one. Children form
/// chains: in each run of four consecutive child slots (`(i / 5) % 4` = 0, 1, 2, 3) the
/// first hangs under a root account (`i % 5 != 4`) among the previous ~100, and each
/// next one under the previous child (`i - 5`), giving hierarchies up to five levels
/// deep. Parents are always earlier and never quarantined (quarantined accounts have
/// `i % 5 == 4`, and a chain restarts at a root when `i - 5` is one of them).
fn account_parent(rng: &mut Rng, i: u64) -> Option<u64> {
    if i % 5 != 4 {
        return None;
    }
    let block = i / 5;
    let root_block = block - rng.below(block.min(20) + 1);
    let root = root_block * 5 + rng.below(4);
    // Position of this child in its run of four (`is_multiple_of` needs Rust 1.87).
    let in_run = block % 4;
    if in_run != 0 && account_valid(i - 5) {
        Some(i - 5)
    } else {
        Some(root)
    }
}

/// The valid account an index-proportional reference lands on: record `j` of `n`
/// points at account `j * accounts / n`, moved to a valid one.
fn spread_account(plan: &Plan, j: u64, n: u64) -> u64 {
    valid_account_at(scaled(j, plan.accounts, n).min(plan.accounts - 1))
}

/// A Shopify customer of the pool: constant data per `k`.
struct ShopCustomer {
    id: u64,
    /// The CRM account whose accounts-payable address a company buyer uses.
    account: Option<u64>,
    email: String,
    first_name: String,
    last_name: String,
}

impl ShopCustomer {
    fn new(seed: u64, plan: &Plan, k: u64) -> ShopCustomer {
        let mut rng = Rng::new(seed, Stream::ShopCustomer, k);
        let id = 207_119_000 + k;
        if shop_customer_is_company(k) {
            let index = valid_account_at(rng.below(plan.accounts));
            let account = Account::new(seed, index);
            return ShopCustomer {
                id,
                account: Some(index),
                email: account.ap_email(),
                first_name: "Accounts".to_string(),
                last_name: "Payable".to_string(),
            };
        }
        let first = rng.pick(&FIRST_NAMES);
        let last = rng.pick(&LAST_NAMES);
        ShopCustomer {
            id,
            account: None,
            email: format!(
                "{}.{}{k}@mail.example",
                first.to_lowercase(),
                last.to_lowercase()
            ),
            first_name: first.to_string(),
            last_name: last.to_string(),
        }
    }
}

// ---------------------------------------------------------------------------------
// JSON writing (mimics the samples: Python `json.dump(indent=1)` documents and
// `json.dumps` NDJSON lines with ", " and ": " separators, UTF-8 kept literal)
// ---------------------------------------------------------------------------------

/// A pretty printer with a one-space indent that can start at a nesting depth, so
/// records can be streamed into an already opened array.
struct Indented {
    depth: usize,
    has_value: bool,
}

fn indent<W: ?Sized + Write>(w: &mut W, depth: usize) -> io::Result<()> {
    for _ in 0..depth {
        w.write_all(b" ")?;
    }
    Ok(())
}

impl Formatter for Indented {
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.depth += 1;
        self.has_value = false;
        w.write_all(b"[")
    }

    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.depth -= 1;
        if self.has_value {
            w.write_all(b"\n")?;
            indent(w, self.depth)?;
        }
        w.write_all(b"]")
    }

    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        w.write_all(if first { b"\n" } else { b",\n" })?;
        indent(w, self.depth)
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.depth += 1;
        self.has_value = false;
        w.write_all(b"{")
    }

    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.depth -= 1;
        if self.has_value {
            w.write_all(b"\n")?;
            indent(w, self.depth)?;
        }
        w.write_all(b"}")
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        w.write_all(if first { b"\n" } else { b",\n" })?;
        indent(w, self.depth)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

/// One-line JSON with `", "` and `": "` separators.
struct Spaced;

impl Formatter for Spaced {
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
}

/// Streams the records of one JSON document's array, one at a time.
struct ArrayWriter<'w> {
    w: &'w mut dyn Write,
    depth: usize,
    empty: bool,
}

impl<'w> ArrayWriter<'w> {
    /// Writes `header` (ending with the array's `[`); records go at `depth`.
    fn open(w: &'w mut dyn Write, header: &str, depth: usize) -> io::Result<ArrayWriter<'w>> {
        w.write_all(header.as_bytes())?;
        Ok(ArrayWriter {
            w,
            depth,
            empty: true,
        })
    }

    fn push<T: Serialize>(&mut self, record: &T) -> Result<()> {
        self.w.write_all(if self.empty { b"\n" } else { b",\n" })?;
        indent(&mut self.w, self.depth)?;
        let formatter = Indented {
            depth: self.depth,
            has_value: false,
        };
        let mut ser = serde_json::Serializer::with_formatter(&mut self.w, formatter);
        record.serialize(&mut ser)?;
        self.empty = false;
        Ok(())
    }

    /// Closes the array (`\n <indent>]`) and writes `footer`.
    fn close(mut self, footer: &str) -> io::Result<()> {
        if !self.empty {
            self.w.write_all(b"\n")?;
            indent(&mut self.w, self.depth - 1)?;
        }
        self.w.write_all(b"]")?;
        self.w.write_all(footer.as_bytes())
    }
}

fn salesforce_array<'w>(w: &'w mut dyn Write, total: u64) -> io::Result<ArrayWriter<'w>> {
    ArrayWriter::open(
        w,
        &format!("{{\n \"totalSize\": {total},\n \"done\": true,\n \"records\": ["),
        2,
    )
}

const SALESFORCE_FOOTER: &str = "\n}";

fn odata_array(w: &mut dyn Write) -> io::Result<ArrayWriter<'_>> {
    ArrayWriter::open(w, "{\n \"d\": {\n  \"results\": [", 3)
}

const ODATA_FOOTER: &str = "\n }\n}";

/// Creates `out/key`, lets `body` stream into it and returns the file's report.
fn write_file(
    out: &Path,
    key: &str,
    body: impl FnOnce(&mut dyn Write) -> Result<Tally>,
) -> Result<ExpectedFile> {
    let path = out.join(key);
    let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = BufWriter::with_capacity(1 << 16, file);
    let tally = body(&mut w).with_context(|| format!("writing {}", path.display()))?;
    w.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(tally.into_file(key))
}

/// Per-file counts while writing.
#[derive(Default)]
struct Tally {
    read: u64,
    inserted: u64,
    updated: u64,
    stale: u64,
    quarantined: BTreeMap<String, u64>,
}

impl Tally {
    fn quarantine(&mut self, reason: &str) {
        *self.quarantined.entry(reason.to_string()).or_default() += 1;
    }

    fn into_file(self, key: &str) -> ExpectedFile {
        ExpectedFile {
            key: key.to_string(),
            records_read: self.read,
            inserted: self.inserted,
            updated: self.updated,
            unchanged: 0,
            stale: self.stale,
            quarantined: self.quarantined,
        }
    }
}

/// Running totals of the canonical rows a correct load ends with.
#[derive(Default)]
struct Rows {
    organizations: u64,
    opportunities: u64,
    orders: u64,
    order_lines: u64,
    /// Bit `n` set: `PRODUCTS[n]` appears in a loaded SAP order.
    erp_skus: u16,
    /// Bit `n` set: `PRODUCTS[n]` appears in a loaded Shopify order.
    shop_skus: u16,
    orders_cents: i64,
    opportunities_cents: i64,
}

// ---------------------------------------------------------------------------------
// Salesforce
// ---------------------------------------------------------------------------------

/// `attributes` of a Salesforce record.
#[derive(Serialize)]
struct SfAttributes {
    #[serde(rename = "type")]
    kind: &'static str,
    url: Option<String>,
}

/// A Salesforce Account record (field names as the API spells them).
#[allow(non_snake_case)]
#[derive(Serialize)]
struct SfAccount<'a> {
    attributes: SfAttributes,
    #[serde(skip_serializing_if = "Option::is_none")]
    Id: Option<&'a str>,
    Name: &'a str,
    Industry: &'a str,
    AnnualRevenue: f64,
    NumberOfEmployees: u32,
    BillingCountry: &'a str,
    BillingCity: Option<&'a str>,
    Website: String,
    Phone: String,
    ParentId: Option<String>,
    Type: &'a str,
    CreatedDate: String,
    LastModifiedDate: String,
    Customer_Tier__c: &'a str,
    Primary_Contact_Email__c: String,
}

impl<'a> SfAccount<'a> {
    fn new(seed: u64, i: u64, a: &'a Account) -> SfAccount<'a> {
        SfAccount {
            attributes: SfAttributes {
                kind: "Account",
                url: Some(format!("/services/data/v59.0/sobjects/Account/{}", a.id)),
            },
            Id: Some(&a.id),
            Name: &a.name,
            Industry: a.industry,
            AnnualRevenue: money_f64(a.revenue_cents),
            NumberOfEmployees: a.employees,
            BillingCountry: a.country.name,
            BillingCity: a.city,
            Website: format!("https://www.{}", a.domain),
            Phone: format!("+1 555 {i:04}"),
            ParentId: a.parent.map(|p| account_id(seed, p)),
            Type: a.kind,
            CreatedDate: sf_timestamp(a.created),
            LastModifiedDate: sf_timestamp(a.modified),
            Customer_Tier__c: a.tier,
            Primary_Contact_Email__c: a.ap_email(),
        }
    }
}

fn write_accounts(w: &mut dyn Write, seed: u64, plan: &Plan, rows: &mut Rows) -> Result<Tally> {
    let mut tally = Tally::default();
    let mut out = salesforce_array(w, plan.accounts)?;
    for i in 0..plan.accounts {
        let account = Account::new(seed, i);
        let mut record = SfAccount::new(seed, i, &account);
        tally.read += 1;
        if account_missing_id(i) {
            record.Id = None;
            record.attributes.url = None;
            tally.quarantine(REASON_MISSING_KEY);
        } else if account_blank_name(i) {
            record.Name = "   ";
            tally.quarantine(REASON_BLANK);
        } else {
            tally.inserted += 1;
            rows.organizations += 1;
        }
        out.push(&record)?;
    }
    out.close(SALESFORCE_FOOTER)?;
    Ok(tally)
}

/// The `k`-th of the K re-sent accounts: spread evenly over the file, always valid.
fn resent_account(plan: &Plan, k: u64) -> u64 {
    valid_account_at(scaled(k, plan.accounts, plan.resent))
}

fn write_account_resends(w: &mut dyn Write, seed: u64, plan: &Plan) -> Result<Tally> {
    let mut tally = Tally::default();
    let mut out = salesforce_array(w, 2 * plan.resent)?;
    for k in 0..plan.resent {
        let i = resent_account(plan, k);
        let account = Account::new(seed, i);
        let mut rng = Rng::new(seed, Stream::Resend, k);
        let current = TIERS.iter().position(|t| *t == account.tier).unwrap_or(0) as u64;
        let new_tier = TIERS[((current + rng.range(1, 3)) % 4) as usize];

        let mut newer = SfAccount::new(seed, i, &account);
        newer.LastModifiedDate = sf_timestamp(account.modified + 30 * DAY);
        newer.Customer_Tier__c = new_tier;
        let mut stale = SfAccount::new(seed, i, &account);
        stale.LastModifiedDate = sf_timestamp(account.modified - 30 * DAY);
        stale.Customer_Tier__c = STALE_TIER;

        if k % 2 == 0 {
            out.push(&newer)?;
            out.push(&stale)?;
        } else {
            out.push(&stale)?;
            out.push(&newer)?;
        }
        tally.read += 2;
        tally.updated += 1;
        tally.stale += 1;
    }
    out.close(SALESFORCE_FOOTER)?;
    Ok(tally)
}

/// `Amount`: a JSON number, or the deliberate text.
#[derive(Serialize)]
#[serde(untagged)]
enum SfAmount {
    Number(f64),
    Text(&'static str),
}

/// A Salesforce Opportunity record.
#[allow(non_snake_case)]
#[derive(Serialize)]
struct SfOpportunity<'a> {
    attributes: SfAttributes,
    Id: &'a str,
    AccountId: String,
    Name: String,
    StageName: &'static str,
    Amount: SfAmount,
    Probability: u32,
    IsClosed: bool,
    IsWon: bool,
    CloseDate: String,
    CurrencyIsoCode: &'static str,
    CreatedDate: String,
    LastModifiedDate: String,
}

fn write_opportunities(
    w: &mut dyn Write,
    seed: u64,
    plan: &Plan,
    rows: &mut Rows,
) -> Result<Tally> {
    let mut tally = Tally::default();
    let mut out = salesforce_array(w, plan.opportunities)?;
    for j in 0..plan.opportunities {
        let mut rng = Rng::new(seed, Stream::Opportunity, j);
        let a = spread_account(plan, j, plan.opportunities);
        let account = Account::new(seed, a);
        let id = sf_id("0065g", seed, Stream::OpportunityIds, j);
        let (stage, probability, closed, won) = rng.pick(&STAGES);
        let cents = rng.range(1_000_000, 50_000_000) as i64;
        let close = EPOCH_2023 + rng.below(730) as i64 * DAY;
        let record = SfOpportunity {
            attributes: SfAttributes {
                kind: "Opportunity",
                url: Some(format!("/services/data/v59.0/sobjects/Opportunity/{id}")),
            },
            Id: &id,
            AccountId: account.id.clone(),
            Name: format!("{} - {}", account.name, rng.pick(&OPPORTUNITY_KINDS)),
            StageName: stage,
            Amount: if opportunity_bad(j) {
                SfAmount::Text("twelve thousand")
            } else {
                SfAmount::Number(money_f64(cents))
            },
            Probability: probability,
            IsClosed: closed,
            IsWon: won,
            CloseDate: plain_date(close),
            CurrencyIsoCode: CURRENCY,
            CreatedDate: sf_timestamp(close - 60 * DAY),
            LastModifiedDate: sf_timestamp(close - DAY),
        };
        tally.read += 1;
        if opportunity_bad(j) {
            tally.quarantine(REASON_INVALID_NUMBER);
        } else {
            tally.inserted += 1;
            rows.opportunities += 1;
            rows.opportunities_cents += cents;
        }
        out.push(&record)?;
    }
    out.close(SALESFORCE_FOOTER)?;
    Ok(tally)
}

// ---------------------------------------------------------------------------------
// SAP
// ---------------------------------------------------------------------------------

/// `__metadata` of an OData record.
#[derive(Serialize)]
struct SapMetadata {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// An `A_CustomerType` record.
#[allow(non_snake_case)]
#[derive(Serialize)]
struct SapCustomer<'a> {
    #[serde(rename = "__metadata")]
    metadata: SapMetadata,
    Customer: &'a str,
    CustomerName: &'a str,
    CustomerFullName: String,
    Country: &'static str,
    TaxNumber1: String,
    EmailAddress: String,
    CreationDate: String,
    CustomerAccountGroup: &'static str,
    DeletionIndicator: bool,
    CreditLimit: String,
}

/// The truth about companies: every record that can become an organization,
/// with the real-world company it is. A CRM account is its own company; an ERP
/// customer that copies an account (two in three) is that account's company, the
/// rest are companies of their own; a Shopify company buyer (accounts-payable
/// address) is the account whose address it uses, a person buyer is alone.
fn write_company_truth(w: &mut dyn Write, seed: u64, plan: &Plan) -> io::Result<()> {
    writeln!(w, "source_system,source_id,company")?;
    for i in (0..plan.accounts).filter(|i| account_valid(*i)) {
        writeln!(w, "crm,{},a{i}", account_id(seed, i))?;
    }
    for c in (0..plan.customers).filter(|c| !customer_bad(*c)) {
        let company = if c % 3 != 2 {
            format!("a{}", spread_account(plan, c, plan.customers))
        } else {
            format!("e{c}")
        };
        writeln!(w, "erp,{},{company}", customer_number(c))?;
    }
    for k in 0..plan.shop_customers {
        let buyer = ShopCustomer::new(seed, plan, k);
        let company = match buyer.account {
            Some(a) => format!("a{a}"),
            None => format!("p{k}"),
        };
        writeln!(w, "shop,{},{company}", buyer.id)?;
    }
    Ok(())
}

/// Customer `c`. Two in three (`c % 3 != 2`) are the same company as a CRM account
/// (its name in SAP spelling, its country, its `ap@` address); the rest are ERP-only
/// companies with domains no CRM account uses (`<word>-<number>.example`).
fn write_customers(w: &mut dyn Write, seed: u64, plan: &Plan, rows: &mut Rows) -> Result<Tally> {
    let mut tally = Tally::default();
    let mut out = odata_array(w)?;
    for c in 0..plan.customers {
        let mut rng = Rng::new(seed, Stream::Customer, c);
        let bad = customer_bad(c);
        let number = if bad {
            String::new()
        } else {
            customer_number(c)
        };
        let (name, country, email) = if c % 3 != 2 {
            let account = Account::new(seed, spread_account(plan, c, plan.customers));
            (sap_name(&account.name), account.country, account.ap_email())
        } else {
            let (name, word) = company_name(&mut rng, c % 5 == 0);
            let domain = format!("{}-{}.example", slug(word), customer_number(c));
            (
                sap_name(&name),
                rng.pick(&COUNTRIES),
                format!("ap@{domain}"),
            )
        };
        let email = if rng.chance(1, 4) {
            email.to_uppercase()
        } else {
            email
        };
        let created = EPOCH_2023 + rng.below(200 * DAY as u64) as i64;
        let record = SapCustomer {
            metadata: SapMetadata {
                id: Some(format!(
                    "https://erp.example/sap/opu/odata/sap/API_BUSINESS_PARTNER/A_Customer('{number}')"
                )),
                kind: "API_BUSINESS_PARTNER.A_CustomerType",
            },
            Customer: &number,
            CustomerName: &name,
            CustomerFullName: format!("{name}  "),
            Country: country.code,
            TaxNumber1: format!("{}{:09}", country.code, rng.below(1_000_000_000)),
            EmailAddress: email,
            CreationDate: if bad {
                "/Date(garbage)/".to_string()
            } else {
                sap_date(created)
            },
            CustomerAccountGroup: "KUNA",
            DeletionIndicator: false,
            CreditLimit: format!("{}.00000", rng.range(10, 99_999)),
        };
        tally.read += 1;
        if bad {
            tally.quarantine(REASON_MISSING_KEY);
        } else {
            tally.inserted += 1;
            rows.organizations += 1;
        }
        out.push(&record)?;
    }
    out.close(ODATA_FOOTER)?;
    Ok(tally)
}

/// An `A_SalesOrderType` record with its items.
#[allow(non_snake_case)]
#[derive(Serialize)]
struct SapOrder<'a> {
    #[serde(rename = "__metadata")]
    metadata: SapMetadata,
    SalesOrder: &'a str,
    SoldToParty: String,
    SalesOrderDate: String,
    TotalNetAmount: String,
    TransactionCurrency: &'static str,
    OverallSDProcessStatus: &'static str,
    to_Item: SapItems<'a>,
}

/// `to_Item` of an order.
#[derive(Serialize)]
struct SapItems<'a> {
    results: Vec<SapItem<'a>>,
}

/// One order item.
#[allow(non_snake_case)]
#[derive(Serialize)]
struct SapItem<'a> {
    SalesOrder: &'a str,
    SalesOrderItem: String,
    Material: &'static str,
    SalesOrderItemText: &'static str,
    RequestedQuantity: String,
    RequestedQuantityUnit: &'static str,
    NetAmount: String,
    TransactionCurrency: &'static str,
}

fn write_sales_orders(w: &mut dyn Write, seed: u64, plan: &Plan, rows: &mut Rows) -> Result<Tally> {
    let mut tally = Tally::default();
    let mut out = odata_array(w)?;
    for o in 0..plan.sales_orders {
        let mut rng = Rng::new(seed, Stream::SalesOrder, o);
        let bad = sales_order_bad(o);
        let number = (4_000_001 + o).to_string();
        let customer = rng.below(plan.customers);
        // Customers at a bad position (p % 50 == 0) are quarantined; c - 1 never is.
        let customer = if customer_bad(customer) {
            customer - 1
        } else {
            customer
        };
        let date = EPOCH_2023 + rng.below(730 * DAY as u64) as i64;
        let status = rng.pick(&SD_STATUSES);
        let count = rng.range(1, 4);
        let mut items = Vec::with_capacity(count as usize);
        let mut total = 0i64;
        let mut skus = 0u16;
        for n in 0..count {
            let p = rng.below(PRODUCTS.len() as u64) as usize;
            let product = PRODUCTS[p];
            let quantity = if bad && n == 0 {
                -3
            } else {
                rng.range(1, 40) as i64
            };
            let net = quantity * product.price_cents;
            total += net;
            skus |= 1 << p;
            items.push(SapItem {
                SalesOrder: &number,
                SalesOrderItem: ((n + 1) * 10).to_string(),
                Material: product.sku,
                SalesOrderItemText: product.title,
                RequestedQuantity: format!("{quantity}.000"),
                RequestedQuantityUnit: "EA",
                NetAmount: cents_str(net),
                TransactionCurrency: CURRENCY,
            });
        }
        let record = SapOrder {
            metadata: SapMetadata {
                id: None,
                kind: "API_SALES_ORDER_SRV.A_SalesOrderType",
            },
            SalesOrder: &number,
            SoldToParty: customer_number(customer),
            SalesOrderDate: sap_date(date),
            TotalNetAmount: cents_str(total),
            TransactionCurrency: CURRENCY,
            OverallSDProcessStatus: status,
            to_Item: SapItems { results: items },
        };
        tally.read += 1;
        if bad {
            tally.quarantine(REASON_OUT_OF_RANGE);
        } else {
            tally.inserted += 1;
            rows.orders += 1;
            rows.order_lines += count;
            rows.orders_cents += total;
            rows.erp_skus |= skus;
        }
        out.push(&record)?;
    }
    out.close(ODATA_FOOTER)?;
    Ok(tally)
}

// ---------------------------------------------------------------------------------
// Shopify
// ---------------------------------------------------------------------------------

/// A Shopify order (one NDJSON line).
#[derive(Serialize)]
struct ShopOrder<'a> {
    id: u64,
    name: &'a str,
    email: &'a str,
    created_at: String,
    updated_at: String,
    currency: &'static str,
    total_price: String,
    subtotal_price: String,
    total_tax: &'static str,
    financial_status: &'static str,
    customer: ShopOrderCustomer<'a>,
    line_items: Vec<ShopLine>,
}

/// The `customer` object of an order.
#[derive(Serialize)]
struct ShopOrderCustomer<'a> {
    id: u64,
    email: &'a str,
    first_name: &'a str,
    last_name: &'a str,
}

/// One line item.
#[derive(Serialize)]
struct ShopLine {
    id: u64,
    sku: &'static str,
    title: &'static str,
    quantity: u32,
    price: String,
    total_discount: &'static str,
    vendor: &'static str,
}

/// A set of indexes `0..n` in `n / 64` words.
struct BitSet(Vec<u64>);

impl BitSet {
    fn new(n: u64) -> BitSet {
        BitSet(vec![0; n.div_ceil(64) as usize])
    }

    fn insert(&mut self, i: u64) {
        if let Some(word) = self.0.get_mut((i / 64) as usize) {
            *word |= 1 << (i % 64);
        }
    }

    fn len(&self) -> u64 {
        self.0.iter().map(|w| u64::from(w.count_ones())).sum()
    }
}

fn write_shop_orders(w: &mut dyn Write, seed: u64, plan: &Plan, rows: &mut Rows) -> Result<Tally> {
    let mut tally = Tally::default();
    let mut buyers = BitSet::new(plan.shop_customers);
    for s in 0..plan.shop_orders {
        let mut rng = Rng::new(seed, Stream::ShopOrder, s);
        let id = 450_789_001 + s;
        let name = format!("#{}", 1000 + s);
        tally.read += 1;
        if shop_line_bad(s) {
            // A line cut off after the first characters of the order number.
            let cut: String = name.chars().take(3).collect();
            writeln!(w, "{{\"id\": {id}, \"name\": \"{cut}")?;
            tally.quarantine(REASON_INVALID_JSON);
            continue;
        }
        let k = rng.below(plan.shop_customers);
        let customer = ShopCustomer::new(seed, plan, k);
        let created = EPOCH_2023 + rng.below(730 * DAY as u64) as i64;
        let offset = rng.pick(&SHOP_OFFSETS);
        let status = rng.pick(&FINANCIAL_STATUSES);
        let count = rng.range(1, 3);
        let mut lines = Vec::with_capacity(count as usize);
        let mut total = 0i64;
        for n in 0..count {
            let p = rng.below(PRODUCTS.len() as u64) as usize;
            let product = PRODUCTS[p];
            let quantity = rng.range(1, 4) as u32;
            total += i64::from(quantity) * product.price_cents;
            rows.shop_skus |= 1 << p;
            lines.push(ShopLine {
                id: id * 10 + n,
                sku: product.sku,
                title: product.title,
                quantity,
                price: cents_str(product.price_cents),
                total_discount: "0.00",
                vendor: SHOP_VENDOR,
            });
        }
        let record = ShopOrder {
            id,
            name: &name,
            email: &customer.email,
            created_at: shop_timestamp(created, offset),
            updated_at: shop_timestamp(created + 2 * 3600, offset),
            currency: CURRENCY,
            total_price: cents_str(total),
            subtotal_price: cents_str(total),
            total_tax: "0.00",
            financial_status: status,
            customer: ShopOrderCustomer {
                id: customer.id,
                email: &customer.email,
                first_name: &customer.first_name,
                last_name: &customer.last_name,
            },
            line_items: lines,
        };
        record.serialize(&mut serde_json::Serializer::with_formatter(&mut *w, Spaced))?;
        w.write_all(b"\n")?;
        tally.inserted += 1;
        buyers.insert(k);
        rows.orders += 1;
        rows.order_lines += count;
        rows.orders_cents += total;
    }
    rows.organizations += buyers.len();
    Ok(tally)
}

#[cfg(test)]
mod tests {
    //! The generated files are checked by an independent reference load that only
    //! reads the files (it knows the defect rules, not the generator's internals).

    use super::*;
    use serde_json::Value;
    use std::collections::{BTreeSet, HashMap, HashSet};
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU64, Ordering};

    const ALL_KEYS: [&str; 6] = [
        ACCOUNTS_KEY,
        ACCOUNTS_RESEND_KEY,
        OPPORTUNITIES_KEY,
        CUSTOMERS_KEY,
        SALES_ORDERS_KEY,
        SHOP_ORDERS_KEY,
    ];

    /// A unique folder under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            static COUNTER: AtomicU64 = AtomicU64::new(0);
            let path = std::env::temp_dir().join(format!(
                "quarry-generate-{name}-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::SeqCst)
            ));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn gen(name: &str, scale: u64, seed: u64) -> (TempDir, Expected) {
        let dir = TempDir::new(name);
        let expected = generate(&dir.0, &GenOptions { scale, seed }).unwrap();
        (dir, expected)
    }

    fn read(dir: &Path, key: &str) -> String {
        fs::read_to_string(dir.join(key)).unwrap()
    }

    /// The records of a Salesforce or OData document.
    fn records(dir: &Path, key: &str) -> Vec<Value> {
        let doc: Value = serde_json::from_str(&read(dir, key)).unwrap();
        let list = doc
            .get("records")
            .or_else(|| doc.pointer("/d/results"))
            .unwrap();
        if let Some(total) = doc.get("totalSize") {
            assert_eq!(
                total.as_u64().unwrap(),
                list.as_array().unwrap().len() as u64
            );
            assert_eq!(doc["done"], Value::Bool(true));
        }
        list.as_array().unwrap().clone()
    }

    /// Exact cents of a decimal string with at most 2 significant decimals
    /// (`"12.30"`, `"16.000"`, `"-3.5"`); panics on anything else.
    fn cents(text: &str) -> i64 {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
        assert!(
            !whole.is_empty() && whole.bytes().all(|b| b.is_ascii_digit()),
            "{text}"
        );
        assert!(frac.bytes().all(|b| b.is_ascii_digit()), "{text}");
        let (kept, rest) = frac.split_at(frac.len().min(2));
        assert!(
            rest.bytes().all(|b| b == b'0'),
            "more than 2 decimals: {text}"
        );
        let value =
            whole.parse::<i64>().unwrap() * 100 + format!("{kept:0<2}").parse::<i64>().unwrap();
        if negative {
            -value
        } else {
            value
        }
    }

    fn str_of<'v>(v: &'v Value, field: &str) -> &'v str {
        v[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} of {v}"))
    }

    fn domain_of(email: &str) -> String {
        email.rsplit_once('@').unwrap().1.to_lowercase()
    }

    /// Every JSON float written for `field` has at most two decimals and no exponent.
    fn assert_float_tokens(text: &str, field: &str) -> usize {
        let needle = format!("\"{field}\": ");
        let mut seen = 0;
        for (at, _) in text.match_indices(&needle) {
            let token: String = text[at + needle.len()..]
                .chars()
                .take_while(|c| *c != ',' && *c != '\n')
                .collect();
            if token.starts_with('"') {
                continue;
            }
            assert!(!token.contains(['e', 'E']), "{field}: {token}");
            let (_, frac) = token.split_once('.').unwrap_or((&token, ""));
            assert!(frac.len() <= 2, "{field}: {token}");
            cents(&token);
            seen += 1;
        }
        seen
    }

    /// Facts the reference load collects besides the expected report.
    #[derive(Default)]
    struct Facts {
        account_ids: Vec<String>,
        valid_accounts: HashSet<String>,
        crm_domains: HashSet<String>,
        max_parent_depth: usize,
        customer_numbers: Vec<String>,
        valid_customers: HashSet<String>,
        sap_emails: Vec<String>,
        shop_customer_emails: HashMap<u64, String>,
        names: Vec<String>,
        bad_json_lines: u64,
        /// (file key, reason) -> 1-based positions of the quarantined records.
        defects: BTreeMap<(&'static str, &'static str), Vec<u64>>,
    }

    /// Loads the files as a correct loader would, from the files alone, and returns
    /// the report it ends with.
    fn reload(dir: &Path, scale: u64, seed: u64) -> (Expected, Facts) {
        let mut facts = Facts::default();
        let mut facts_defects: BTreeMap<(&str, &str), Vec<u64>> = BTreeMap::new();
        let mut files = Vec::new();
        let mut rows: BTreeMap<String, u64> = BTreeMap::new();
        let mut orders_cents = 0i64;
        let mut opportunities_cents = 0i64;
        let blank_report = |key: &str| ExpectedFile {
            key: key.to_string(),
            records_read: 0,
            inserted: 0,
            updated: 0,
            unchanged: 0,
            stale: 0,
            quarantined: BTreeMap::new(),
        };
        let mut quarantine = |f: &mut ExpectedFile, reason: &'static str| {
            *f.quarantined.entry(reason.to_string()).or_default() += 1;
            let key = ALL_KEYS.into_iter().find(|k| *k == f.key).unwrap();
            facts_defects
                .entry((key, reason))
                .or_default()
                .push(f.records_read);
        };

        // Accounts, first file: id -> (LastModifiedDate, record, version).
        let mut stored: HashMap<String, (String, Value, u32)> = HashMap::new();
        let mut parents: HashMap<String, Option<String>> = HashMap::new();
        let mut f = blank_report(ACCOUNTS_KEY);
        for r in records(dir, ACCOUNTS_KEY) {
            f.records_read += 1;
            assert_eq!(r["attributes"]["type"], "Account");
            facts.names.push(str_of(&r, "Name").to_string());
            let Some(id) = r.get("Id").and_then(Value::as_str) else {
                quarantine(&mut f, REASON_MISSING_KEY);
                continue;
            };
            facts.account_ids.push(id.to_string());
            if str_of(&r, "Name").trim().is_empty() {
                quarantine(&mut f, REASON_BLANK);
                continue;
            }
            // A parent is an earlier, valid account.
            let parent = r["ParentId"].as_str().map(str::to_string);
            if let Some(p) = &parent {
                assert!(facts.valid_accounts.contains(p), "parent {p} of {id}");
            }
            assert!(stored
                .insert(
                    id.to_string(),
                    (str_of(&r, "LastModifiedDate").to_string(), r.clone(), 1)
                )
                .is_none());
            f.inserted += 1;
            facts.valid_accounts.insert(id.to_string());
            facts
                .crm_domains
                .insert(domain_of(str_of(&r, "Primary_Contact_Email__c")));
            parents.insert(id.to_string(), parent);
        }
        for id in parents.keys() {
            let (mut depth, mut at) = (0, id.clone());
            while let Some(Some(p)) = parents.get(&at) {
                depth += 1;
                at = p.clone();
                assert!(depth < 100, "cycle at {id}");
            }
            facts.max_parent_depth = facts.max_parent_depth.max(depth);
        }
        *rows.entry("organizations".into()).or_default() += f.inserted;
        files.push(f);

        // Accounts, second file: versions by LastModifiedDate.
        let mut f = blank_report(ACCOUNTS_RESEND_KEY);
        for r in records(dir, ACCOUNTS_RESEND_KEY) {
            f.records_read += 1;
            let id = str_of(&r, "Id");
            let modified = str_of(&r, "LastModifiedDate").to_string();
            let (current, record, version) = stored.get_mut(id).unwrap();
            if modified > *current {
                f.updated += 1;
                *current = modified;
                *record = r.clone();
                *version += 1;
                assert_ne!(str_of(&r, "Customer_Tier__c"), STALE_TIER);
            } else if modified < *current {
                f.stale += 1;
                assert_eq!(str_of(&r, "Customer_Tier__c"), STALE_TIER);
            } else {
                assert_eq!(*record, r);
                f.unchanged += 1;
            }
        }
        let versioned = stored.values().filter(|(_, _, v)| *v == 2).count() as u64;
        assert!(stored.values().all(|(_, _, v)| *v <= 2));
        files.push(f);

        // Opportunities.
        let text = read(dir, OPPORTUNITIES_KEY);
        assert_float_tokens(&text, "Amount");
        let mut f = blank_report(OPPORTUNITIES_KEY);
        for r in records(dir, OPPORTUNITIES_KEY) {
            f.records_read += 1;
            assert!(facts.valid_accounts.contains(str_of(&r, "AccountId")));
            match &r["Amount"] {
                Value::Number(n) => {
                    opportunities_cents += cents(&n.to_string());
                    f.inserted += 1;
                }
                _ => quarantine(&mut f, REASON_INVALID_NUMBER),
            }
        }
        rows.insert("opportunities".into(), f.inserted);
        files.push(f);

        // SAP customers.
        let mut f = blank_report(CUSTOMERS_KEY);
        for r in records(dir, CUSTOMERS_KEY) {
            f.records_read += 1;
            assert!(str_of(&r["__metadata"], "type").ends_with("A_CustomerType"));
            let number = str_of(&r, "Customer");
            if number.trim().is_empty() {
                quarantine(&mut f, REASON_MISSING_KEY);
                continue;
            }
            f.inserted += 1;
            facts.customer_numbers.push(number.to_string());
            facts.valid_customers.insert(number.to_string());
            facts
                .sap_emails
                .push(str_of(&r, "EmailAddress").to_string());
            facts.names.push(str_of(&r, "CustomerName").to_string());
        }
        *rows.entry("organizations".into()).or_default() += f.inserted;
        files.push(f);

        // SAP sales orders: a negative quantity quarantines the whole order.
        let mut prices: HashMap<String, (String, i64)> = HashMap::new();
        let (mut orders, mut lines) = (0u64, 0u64);
        let mut erp_skus = BTreeSet::new();
        let mut f = blank_report(SALES_ORDERS_KEY);
        for r in records(dir, SALES_ORDERS_KEY) {
            f.records_read += 1;
            assert!(str_of(&r["__metadata"], "type").ends_with("A_SalesOrderType"));
            assert!(facts.valid_customers.contains(str_of(&r, "SoldToParty")));
            let items = r["to_Item"]["results"].as_array().unwrap();
            assert!((1..=4).contains(&items.len()));
            let mut sum = 0;
            let mut negative = false;
            for (n, item) in items.iter().enumerate() {
                assert_eq!(str_of(item, "SalesOrderItem"), ((n + 1) * 10).to_string());
                assert_eq!(str_of(item, "SalesOrder"), str_of(&r, "SalesOrder"));
                let quantity = str_of(item, "RequestedQuantity");
                assert!(quantity.ends_with(".000"), "{quantity}");
                let quantity: i64 = quantity.trim_end_matches(".000").parse().unwrap();
                negative |= quantity <= 0;
                let net = cents(str_of(item, "NetAmount"));
                let sku = str_of(item, "Material").to_string();
                let unit = net / quantity;
                assert_eq!(unit * quantity, net);
                let text = str_of(item, "SalesOrderItemText").to_string();
                let known = prices.entry(sku).or_insert((text.clone(), unit));
                assert_eq!(*known, (text, unit), "SKU data is fixed");
                sum += net;
            }
            assert_eq!(cents(str_of(&r, "TotalNetAmount")), sum);
            if negative {
                quarantine(&mut f, REASON_OUT_OF_RANGE);
                continue;
            }
            f.inserted += 1;
            orders += 1;
            lines += items.len() as u64;
            orders_cents += sum;
            for item in items {
                erp_skus.insert(str_of(item, "Material").to_string());
            }
        }
        files.push(f);

        // Shopify orders.
        let mut shop_skus = BTreeSet::new();
        let mut buyers: HashMap<u64, Value> = HashMap::new();
        let mut f = blank_report(SHOP_ORDERS_KEY);
        let text = read(dir, SHOP_ORDERS_KEY);
        assert!(text.ends_with('\n'));
        for line in text.lines() {
            f.records_read += 1;
            let Ok(r) = serde_json::from_str::<Value>(line) else {
                quarantine(&mut f, REASON_INVALID_JSON);
                facts.bad_json_lines += 1;
                continue;
            };
            let items = r["line_items"].as_array().unwrap();
            assert!(!items.is_empty());
            let mut sum = 0;
            for item in items {
                let sku = str_of(item, "sku").to_string();
                let price = cents(str_of(item, "price"));
                let quantity = item["quantity"].as_i64().unwrap();
                assert!(quantity >= 1);
                sum += price * quantity - cents(str_of(item, "total_discount"));
                let title = str_of(item, "title").to_string();
                let known = prices.entry(sku.clone()).or_insert((title.clone(), price));
                assert_eq!(*known, (title, price), "SKU data is fixed across systems");
                shop_skus.insert(sku);
            }
            assert_eq!(cents(str_of(&r, "total_price")), sum);
            assert_eq!(r["total_price"], r["subtotal_price"]);
            let customer = r["customer"].clone();
            assert_eq!(customer["email"], r["email"]);
            let id = customer["id"].as_u64().unwrap();
            facts
                .shop_customer_emails
                .insert(id, str_of(&customer, "email").to_string());
            if let Some(known) = buyers.insert(id, customer.clone()) {
                assert_eq!(known, customer, "customer data is constant");
            }
            f.inserted += 1;
            orders += 1;
            lines += items.len() as u64;
            orders_cents += sum;
        }
        *rows.entry("organizations".into()).or_default() += buyers.len() as u64;
        files.push(f);

        rows.insert("orders".into(), orders);
        rows.insert("order_lines".into(), lines);
        rows.insert("products".into(), (erp_skus.len() + shop_skus.len()) as u64);
        for f in &mut files {
            f.quarantined.retain(|_, n| *n > 0);
        }
        facts.defects = facts_defects;
        let expected = Expected {
            scale,
            seed,
            files,
            rows,
            versioned_organizations: versioned,
            orders_total_amount: cents_str(orders_cents),
            opportunities_amount: cents_str(opportunities_cents),
        };
        (expected, facts)
    }

    #[test]
    fn same_seed_gives_identical_bytes() {
        let (a, ea) = gen("det-a", 3000, 7);
        let (b, eb) = gen("det-b", 3000, 7);
        let (c, _) = gen("det-c", 3000, 8);
        assert_eq!(ea, eb);
        for key in ALL_KEYS.iter().chain([&EXPECTED_FILE]) {
            let left = fs::read(a.0.join(key)).unwrap();
            assert_eq!(left, fs::read(b.0.join(key)).unwrap(), "{key}");
            assert_ne!(
                left,
                fs::read(c.0.join(key)).unwrap(),
                "{key} ignores the seed"
            );
        }
    }

    #[test]
    fn expected_matches_an_independent_reload() {
        let (dir, expected) = gen("reload", 5000, 42);
        let (reloaded, facts) = reload(&dir.0, 5000, 42);
        assert_eq!(reloaded, expected);
        let on_disk: Expected = serde_json::from_str(&read(&dir.0, EXPECTED_FILE)).unwrap();
        assert_eq!(on_disk, expected);

        // The defect rates of the brief, at scale 5000.
        let quarantined = |key: &str, reason: &str| {
            let file = expected.files.iter().find(|f| f.key == key).unwrap();
            file.quarantined.get(reason).copied().unwrap_or(0)
        };
        assert_eq!(quarantined(ACCOUNTS_KEY, REASON_MISSING_KEY), 1000 / 50);
        assert_eq!(quarantined(ACCOUNTS_KEY, REASON_BLANK), 1000 / 50);
        assert_eq!(
            quarantined(OPPORTUNITIES_KEY, REASON_INVALID_NUMBER),
            1500 / 50
        );
        assert_eq!(quarantined(CUSTOMERS_KEY, REASON_MISSING_KEY), 500 / 50);
        assert_eq!(
            quarantined(SALES_ORDERS_KEY, REASON_OUT_OF_RANGE),
            1000 / 50
        );
        assert_eq!(
            quarantined(SHOP_ORDERS_KEY, REASON_INVALID_JSON),
            1000 / 100
        );
        assert_eq!(facts.bad_json_lines, 10);
        assert_eq!(expected.versioned_organizations, 960 * 5 / 100);
        let resend = &expected.files[1];
        assert_eq!(resend.records_read, 2 * expected.versioned_organizations);
        assert_eq!(resend.updated, expected.versioned_organizations);
        assert_eq!(resend.stale, expected.versioned_organizations);
        let read: u64 = expected.files.iter().map(|f| f.records_read).sum();
        assert!((5000..5200).contains(&read), "{read}");
        assert_eq!(expected.rows["products"], 24);
    }

    #[test]
    fn defects_sit_at_the_documented_positions() {
        let (dir, _) = gen("positions", 5000, 9);
        let (_, facts) = reload(&dir.0, 5000, 9);
        let every = |n: u64, period: u64, offset: u64| -> Vec<u64> {
            (1..=n).filter(|p| p % period == offset).collect()
        };
        let expected = BTreeMap::from([
            ((ACCOUNTS_KEY, REASON_MISSING_KEY), every(1000, 50, 0)),
            ((ACCOUNTS_KEY, REASON_BLANK), every(1000, 50, 25)),
            (
                (OPPORTUNITIES_KEY, REASON_INVALID_NUMBER),
                every(1500, 50, 0),
            ),
            ((CUSTOMERS_KEY, REASON_MISSING_KEY), every(500, 50, 0)),
            ((SALES_ORDERS_KEY, REASON_OUT_OF_RANGE), every(1000, 50, 0)),
            ((SHOP_ORDERS_KEY, REASON_INVALID_JSON), every(1000, 100, 0)),
        ]);
        assert_eq!(facts.defects, expected);
        // The re-sent accounts alternate: newer first, then stale first.
        let resent = records(&dir.0, ACCOUNTS_RESEND_KEY);
        for (k, pair) in resent.chunks(2).enumerate() {
            assert_eq!(pair[0]["Id"], pair[1]["Id"]);
            let stale_first = str_of(&pair[0], "Customer_Tier__c") == STALE_TIER;
            assert_eq!(stale_first, k % 2 == 1, "pair {k}");
        }
    }

    #[test]
    fn references_and_identities_are_consistent() {
        let (dir, _) = gen("refs", 5000, 3);
        let (_, facts) = reload(&dir.0, 5000, 3);
        assert!(
            facts.max_parent_depth >= 3,
            "depth {}",
            facts.max_parent_depth
        );
        // Ids are unique and shaped like Salesforce's.
        let unique: HashSet<_> = facts.account_ids.iter().collect();
        assert_eq!(unique.len(), facts.account_ids.len());
        assert!(facts
            .account_ids
            .iter()
            .all(|id| id.len() == 18 && id.starts_with("0015g")));
        assert!(facts
            .customer_numbers
            .iter()
            .all(|n| n.len() == 10 && n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit())));
        // About two in three SAP customers share their ap@ domain with a CRM account.
        let shared = facts
            .sap_emails
            .iter()
            .filter(|e| facts.crm_domains.contains(&domain_of(e)))
            .count() as f64;
        let ratio = shared / facts.sap_emails.len() as f64;
        assert!((0.6..0.72).contains(&ratio), "{ratio}");
        assert!(facts.sap_emails.iter().any(|e| e.starts_with("AP@")));
        assert!(facts.sap_emails.iter().any(|e| e.starts_with("ap@")));
        // Every ap@ shop buyer is a CRM company; about one buyer in ten is one.
        let ap: Vec<_> = facts
            .shop_customer_emails
            .values()
            .filter(|e| e.starts_with("ap@"))
            .collect();
        assert!(ap.iter().all(|e| facts.crm_domains.contains(&domain_of(e))));
        let share = ap.len() as f64 / facts.shop_customer_emails.len() as f64;
        assert!((0.05..0.15).contains(&share), "{share}");
        // Non-ASCII names appear regularly.
        for word in ["Müller", "Åkesson", "Nguyễn"] {
            assert!(facts.names.iter().any(|n| n.contains(word)), "{word}");
        }
    }

    #[test]
    fn values_have_the_source_styles() {
        let (dir, _) = gen("styles", 2000, 11);
        let accounts = read(&dir.0, ACCOUNTS_KEY);
        assert!(accounts.starts_with("{\n \"totalSize\": 400,\n \"done\": true,\n \"records\": [\n  {\n   \"attributes\": {\n    \"type\": \"Account\","));
        assert!(accounts.ends_with("\n  }\n ]\n}"));
        assert!(read(&dir.0, SALES_ORDERS_KEY)
            .starts_with("{\n \"d\": {\n  \"results\": [\n   {\n    \"__metadata\": {"));
        assert!(assert_float_tokens(&accounts, "AnnualRevenue") > 0);
        assert!(accounts.contains("00.0,\n"), "whole amounts print as N.0");

        let is_sf_time =
            |s: &str| s.len() == 28 && s.ends_with(".000+0000") && is_local_time(&s[..19]);
        for r in records(&dir.0, ACCOUNTS_KEY) {
            assert!(is_sf_time(str_of(&r, "CreatedDate")));
            assert!(is_sf_time(str_of(&r, "LastModifiedDate")));
            assert!(
                ["Platinum", "Gold", "Silver", "Bronze"].contains(&str_of(&r, "Customer_Tier__c"))
            );
            let country = str_of(&r, "BillingCountry");
            assert!(COUNTRIES.iter().any(|c| c.name == country));
            let email = str_of(&r, "Primary_Contact_Email__c");
            assert_eq!(
                format!("https://www.{}", &email[3..]),
                str_of(&r, "Website")
            );
        }
        for r in records(&dir.0, OPPORTUNITIES_KEY) {
            let date = str_of(&r, "CloseDate");
            assert!(is_local_time(&format!("{date}T00:00:00")));
            assert!(is_sf_time(str_of(&r, "CreatedDate")));
        }
        for r in records(&dir.0, CUSTOMERS_KEY) {
            let name = str_of(&r, "CustomerName");
            assert_eq!(name, name.to_uppercase());
            assert_eq!(str_of(&r, "CustomerFullName"), format!("{name}  "));
            let code = str_of(&r, "Country");
            assert!(COUNTRIES.iter().any(|c| c.code == code));
            let tax = str_of(&r, "TaxNumber1");
            assert!(tax.len() == 11 && tax.starts_with(code));
            let limit = str_of(&r, "CreditLimit");
            assert_eq!(limit.split_once('.').unwrap().1.len(), 5);
            let date = str_of(&r, "CreationDate");
            let ms = date
                .strip_prefix("/Date(")
                .and_then(|d| d.strip_suffix(")/"))
                .unwrap();
            if !str_of(&r, "Customer").is_empty() {
                assert!(ms.parse::<i64>().is_ok(), "{date}");
            }
        }
        for line in read(&dir.0, SHOP_ORDERS_KEY).lines() {
            let Ok(r) = serde_json::from_str::<Value>(line) else {
                assert!(line.starts_with("{\"id\": 4507"), "{line}");
                continue;
            };
            assert!(line.starts_with("{\"id\": "));
            let created = str_of(&r, "created_at");
            let (local, offset) = created.split_at(19);
            assert!(is_local_time(local));
            assert!(offset.len() == 6 && (offset.starts_with('+') || offset.starts_with('-')));
            assert!(str_of(&r, "name").starts_with('#'));
            assert_eq!(str_of(&r, "currency"), "USD");
        }
    }

    /// Whether `s` is a valid `YYYY-MM-DDTHH:MM:SS` (checked by chrono).
    fn is_local_time(s: &str) -> bool {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").is_ok()
    }

    #[test]
    fn scale_100_works() {
        let (dir, expected) = gen("small", 100, 1);
        let read: Vec<u64> = expected.files.iter().map(|f| f.records_read).collect();
        assert_eq!(read, vec![20, 4, 30, 10, 20, 20]);
        let keys: Vec<&str> = expected.files.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(keys, ALL_KEYS);
        let (reloaded, _) = reload(&dir.0, 100, 1);
        assert_eq!(reloaded, expected);
        // Tiny scales still give ten of each kind.
        let (_, tiny) = gen("tiny", 0, 1);
        assert!(tiny.files.iter().all(|f| f.records_read >= 4));
    }

    #[test]
    fn plan_splits_the_scale() {
        let plan = Plan::new(1_000_000);
        assert_eq!(
            [
                plan.accounts,
                plan.opportunities,
                plan.customers,
                plan.sales_orders,
                plan.shop_orders
            ],
            [200_000, 300_000, 100_000, 200_000, 200_000]
        );
        assert_eq!(plan.resent, (200_000 - 4000 - 4000) * 5 / 100);
        for n in 0..260 {
            for (period, offset) in [(50, 0), (50, 25), (100, 0), (10, 0)] {
                let brute = (0..n).filter(|&i| at(i, period, offset)).count() as u64;
                assert_eq!(count_at(n, period, offset), brute, "{n} {period} {offset}");
            }
        }
        // Invalid accounts all sit where i - 1 is valid.
        for i in 0..10_000 {
            assert!(account_valid(valid_account_at(i)));
        }
    }

    #[test]
    fn money_floats_round_trip() {
        let mut rng = Rng::new(1, Stream::Account, 0);
        let mut samples: Vec<i64> = (0..200_000)
            .map(|_| rng.below(100_000_000_000) as i64)
            .collect();
        samples.extend([
            0,
            1,
            10,
            99,
            100,
            4_185_600_000,
            46_757_439,
            6_417_760,
            99_999_999_999,
        ]);
        for c in samples {
            let text = serde_json::to_string(&money_f64(c)).unwrap();
            let (_, frac) = text.split_once('.').unwrap();
            assert!(frac.len() <= 2 && !text.contains('e'), "{c}: {text}");
            assert_eq!(cents(&text), c, "{text}");
        }
        assert_eq!(cents_str(-1234), "-12.34");
        assert_eq!(cents_str(5), "0.05");
    }

    #[test]
    fn time_formats_match_chrono() {
        let mut rng = Rng::new(2, Stream::Account, 0);
        for _ in 0..20_000 {
            let secs = rng.below(4_000_000_000) as i64 - 500_000_000;
            let offset = rng.pick(&SHOP_OFFSETS);
            let utc = chrono::DateTime::from_timestamp(secs, 0).unwrap();
            assert_eq!(
                sf_timestamp(secs),
                utc.format("%Y-%m-%dT%H:%M:%S.000+0000").to_string()
            );
            assert_eq!(plain_date(secs), utc.format("%Y-%m-%d").to_string());
            let zone = chrono::FixedOffset::east_opt(offset as i32).unwrap();
            assert_eq!(
                shop_timestamp(secs, offset),
                utc.with_timezone(&zone)
                    .format("%Y-%m-%dT%H:%M:%S%:z")
                    .to_string()
            );
        }
        assert_eq!(sap_date(1_678_441_062), "/Date(1678441062000)/");
    }

    #[test]
    fn salesforce_ids_are_unique() {
        let ids: HashSet<String> = (0..200_000).map(|i| account_id(5, i)).collect();
        assert_eq!(ids.len(), 200_000);
        assert!(ids.iter().all(|id| id.len() == 18 && id.ends_with("AAA")));
    }

    #[test]
    fn sap_names_follow_sap_spelling() {
        assert_eq!(sap_name("Müller Inc."), "MÜLLER INC");
        assert_eq!(sap_name("Initech Corp."), "INITECH CORPORATION");
        assert_eq!(sap_name("Nguyễn S.A."), "NGUYỄN S.A.");
        assert_eq!(slug("Nguyễn"), "nguyn");
        assert_eq!(slug("São Paulo"), "sopaulo");
    }
}
