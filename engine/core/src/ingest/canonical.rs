//! The canonical entity tables as ingest sees them: which columns a mapping may
//! fill and their types. Kept in step with the migrations by a test that compares
//! it with `information_schema` (tests/tests/ingest.rs).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A canonical entity table that mappings write.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    Organizations,
    Products,
    Opportunities,
    Orders,
    /// Only as a child of an order record; `order_id` comes from the parent.
    OrderLines,
    /// Contacts, leads and other persons, linked to an organization.
    People,
}

/// The type a column's value must have after transforms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    Text,
    /// Fixed-length text (country or currency codes).
    Char(usize),
    /// 32-bit integer.
    Integer,
    /// numeric(precision, scale).
    Decimal {
        precision: u32,
        scale: u32,
    },
    Boolean,
    Date,
    Timestamp,
}

/// One column a mapping may fill.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColType,
    /// NOT NULL in the table (a mapped record without it is quarantined).
    pub required: bool,
    /// Value written when a mapped value is null (NOT NULL columns with a default).
    pub default: Option<&'static str>,
}

const fn c(name: &'static str, ty: ColType, required: bool) -> Column {
    Column {
        name,
        ty,
        required,
        default: None,
    }
}

const fn d(name: &'static str, ty: ColType, default: &'static str) -> Column {
    Column {
        name,
        ty,
        required: false,
        default: Some(default),
    }
}

use ColType::*;

const ORGANIZATIONS: &[Column] = &[
    d("kind", Text, "company"),
    c("name", Text, true),
    c("legal_name", Text, false),
    c("industry", Text, false),
    c("country_code", Char(2), false),
    c("city", Text, false),
    c("website", Text, false),
    c("email", Text, false),
    c("phone", Text, false),
    c("vat_id", Text, false),
    c("tier", Text, false),
    c("account_type", Text, false),
    c("parent_source_id", Text, false),
    c(
        "annual_revenue",
        Decimal {
            precision: 18,
            scale: 2,
        },
        false,
    ),
    c("employee_count", Integer, false),
    c(
        "credit_limit",
        Decimal {
            precision: 18,
            scale: 2,
        },
        false,
    ),
    d("is_deleted", Boolean, "false"),
    c("source_created_at", Timestamp, false),
    c("source_updated_at", Timestamp, false),
];
const PRODUCTS: &[Column] = &[
    c("sku", Text, true),
    c("name", Text, true),
    c("category", Text, false),
    c(
        "unit_price",
        Decimal {
            precision: 18,
            scale: 2,
        },
        false,
    ),
    c("currency", Char(3), false),
    c("source_created_at", Timestamp, false),
    c("source_updated_at", Timestamp, false),
];
const OPPORTUNITIES: &[Column] = &[
    c("name", Text, true),
    c("organization_source_id", Text, false),
    c("stage", Text, false),
    c(
        "amount",
        Decimal {
            precision: 18,
            scale: 2,
        },
        false,
    ),
    c("currency", Char(3), false),
    c(
        "probability",
        Decimal {
            precision: 5,
            scale: 2,
        },
        false,
    ),
    d("is_closed", Boolean, "false"),
    d("is_won", Boolean, "false"),
    c("close_date", Date, false),
    c("source_created_at", Timestamp, false),
    c("source_updated_at", Timestamp, false),
];
const ORDERS: &[Column] = &[
    c("order_number", Text, false),
    c("customer_source_id", Text, false),
    c("order_date", Timestamp, true),
    c("status", Text, false),
    c("channel", Text, false),
    c("currency", Char(3), false),
    c("billing_country_code", Char(2), false),
    c("shipping_country_code", Char(2), false),
    c(
        "subtotal_amount",
        Decimal {
            precision: 18,
            scale: 2,
        },
        false,
    ),
    c(
        "tax_amount",
        Decimal {
            precision: 18,
            scale: 2,
        },
        false,
    ),
    c(
        "total_amount",
        Decimal {
            precision: 18,
            scale: 2,
        },
        true,
    ),
    c("source_created_at", Timestamp, false),
    c("source_updated_at", Timestamp, false),
];
const ORDER_LINES: &[Column] = &[
    c("line_number", Integer, true),
    c("sku", Text, false),
    c("description", Text, false),
    c(
        "quantity",
        Decimal {
            precision: 18,
            scale: 3,
        },
        true,
    ),
    c("unit", Text, false),
    c(
        "unit_price",
        Decimal {
            precision: 18,
            scale: 2,
        },
        false,
    ),
    d(
        "discount_amount",
        Decimal {
            precision: 18,
            scale: 2,
        },
        "0",
    ),
    // Filled by the database from quantity × unit_price − discount when null.
    c(
        "net_amount",
        Decimal {
            precision: 18,
            scale: 2,
        },
        false,
    ),
    c("currency", Char(3), false),
    c("source_created_at", Timestamp, false),
    c("source_updated_at", Timestamp, false),
];

const PEOPLE: &[Column] = &[
    d("kind", Text, "contact"),
    c("name", Text, true),
    c("first_name", Text, false),
    c("last_name", Text, false),
    c("title", Text, false),
    c("email", Text, false),
    c("phone", Text, false),
    c("organization_source_id", Text, false),
    c("company_name", Text, false),
    c("lead_status", Text, false),
    c("country_code", Char(2), false),
    c("city", Text, false),
    d("is_deleted", Boolean, "false"),
    c("source_created_at", Timestamp, false),
    c("source_updated_at", Timestamp, false),
];

impl Entity {
    /// In load order: organizations before the rows that refer to them.
    pub const ALL: [Entity; 6] = [
        Entity::Organizations,
        Entity::Products,
        Entity::Opportunities,
        Entity::People,
        Entity::Orders,
        Entity::OrderLines,
    ];

    /// The table name in schema `canonical`.
    pub fn table(self) -> &'static str {
        match self {
            Entity::Organizations => "organizations",
            Entity::Products => "products",
            Entity::Opportunities => "opportunities",
            Entity::Orders => "orders",
            Entity::OrderLines => "order_lines",
            Entity::People => "people",
        }
    }

    /// Columns a mapping may fill (besides source_system, source_id, attributes).
    pub fn columns(self) -> &'static [Column] {
        match self {
            Entity::Organizations => ORGANIZATIONS,
            Entity::Products => PRODUCTS,
            Entity::Opportunities => OPPORTUNITIES,
            Entity::Orders => ORDERS,
            Entity::OrderLines => ORDER_LINES,
            Entity::People => PEOPLE,
        }
    }

    pub fn column(self, name: &str) -> Option<&'static Column> {
        self.columns().iter().find(|c| c.name == name)
    }
}
