-- Quarry canonical schema, version 1.
--
-- `canonical` is the analysts' public data contract: every table and column is
-- documented with COMMENT ON (docs/schema.md is generated from these comments).
-- `quarry` holds the platform's own bookkeeping (ledger, quarantine, cache, jobs);
-- the reader role cannot see it except through the views in `canonical`.

CREATE SCHEMA IF NOT EXISTS canonical;
CREATE SCHEMA IF NOT EXISTS quarry;
COMMENT ON SCHEMA canonical IS 'The canonical model: one row per business entity per source system, typed columns plus JSONB attributes, versioned with history. Read-only for analytics.';
COMMENT ON SCHEMA quarry IS 'Quarry internals: ingest ledger, quarantine, data version, cache and jobs. Not readable by the analytics (reader) role.';

-- ---------------------------------------------------------------------------
-- Reference data
-- ---------------------------------------------------------------------------
CREATE TABLE canonical.countries (
    code   char(2) PRIMARY KEY,
    name   text NOT NULL UNIQUE,
    region text NOT NULL
);
COMMENT ON TABLE canonical.countries IS 'ISO 3166-1 alpha-2 countries with the sales region they belong to. Mappings normalise country names and codes to these codes.';
COMMENT ON COLUMN canonical.countries.code IS 'ISO 3166-1 alpha-2 code, upper case (DE, US, JP).';
COMMENT ON COLUMN canonical.countries.name IS 'English short name (Germany, United States, Japan).';
COMMENT ON COLUMN canonical.countries.region IS 'Sales region: Europe, North America, Latin America, Asia Pacific or Middle East & Africa.';

INSERT INTO canonical.countries (code, name, region) VALUES
    ('AT','Austria','Europe'), ('BE','Belgium','Europe'), ('CH','Switzerland','Europe'),
    ('CZ','Czechia','Europe'), ('DE','Germany','Europe'), ('DK','Denmark','Europe'),
    ('ES','Spain','Europe'), ('FI','Finland','Europe'), ('FR','France','Europe'),
    ('GB','United Kingdom','Europe'), ('IE','Ireland','Europe'), ('IT','Italy','Europe'),
    ('NL','Netherlands','Europe'), ('NO','Norway','Europe'), ('PL','Poland','Europe'),
    ('PT','Portugal','Europe'), ('SE','Sweden','Europe'),
    ('US','United States','North America'), ('CA','Canada','North America'), ('MX','Mexico','North America'),
    ('BR','Brazil','Latin America'), ('AR','Argentina','Latin America'), ('CL','Chile','Latin America'),
    ('CO','Colombia','Latin America'),
    ('JP','Japan','Asia Pacific'), ('CN','China','Asia Pacific'), ('IN','India','Asia Pacific'),
    ('KR','South Korea','Asia Pacific'), ('SG','Singapore','Asia Pacific'), ('AU','Australia','Asia Pacific'),
    ('NZ','New Zealand','Asia Pacific'), ('VN','Vietnam','Asia Pacific'),
    ('AE','United Arab Emirates','Middle East & Africa'), ('SA','Saudi Arabia','Middle East & Africa'),
    ('ZA','South Africa','Middle East & Africa'), ('IL','Israel','Middle East & Africa'),
    ('EG','Egypt','Middle East & Africa'), ('NG','Nigeria','Middle East & Africa'),
    ('KE','Kenya','Middle East & Africa'), ('TR','Turkey','Middle East & Africa');

-- ---------------------------------------------------------------------------
-- Bookkeeping referenced by entity rows
-- ---------------------------------------------------------------------------
CREATE TABLE quarry.ingest_files (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_system   text NOT NULL,
    object_key      text NOT NULL,
    content_sha256  char(64) NOT NULL,
    size_bytes      bigint NOT NULL CHECK (size_bytes >= 0),
    mapping_version text,
    status          text NOT NULL CHECK (status IN ('processing', 'loaded', 'failed')),
    records_read    bigint NOT NULL DEFAULT 0,
    inserted        bigint NOT NULL DEFAULT 0,
    updated         bigint NOT NULL DEFAULT 0,
    unchanged       bigint NOT NULL DEFAULT 0,
    stale           bigint NOT NULL DEFAULT 0,
    quarantined     bigint NOT NULL DEFAULT 0,
    error           text,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    UNIQUE (source_system, object_key, content_sha256)
);
COMMENT ON TABLE quarry.ingest_files IS 'The ingest ledger: one row per distinct file (source + object key + content hash). A file seen again with the same identity is a duplicate and loads nothing.';

CREATE TABLE quarry.quarantine (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ingest_file_id  bigint REFERENCES quarry.ingest_files (id),
    source_system   text NOT NULL,
    object_key      text NOT NULL,
    position        bigint NOT NULL,
    record_type     text,
    raw_record      text NOT NULL,
    reason_code     text NOT NULL,
    message         text NOT NULL,
    mapping_version text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    resolved_at     timestamptz
);
COMMENT ON TABLE quarry.quarantine IS 'Records that failed validation or mapping, kept verbatim with the reason, so that they can be fixed and replayed.';
CREATE INDEX quarantine_file_idx ON quarry.quarantine (ingest_file_id);
CREATE INDEX quarantine_open_idx ON quarry.quarantine (source_system, reason_code) WHERE resolved_at IS NULL;

CREATE TABLE quarry.data_version (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version    bigint NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE quarry.data_version IS 'A counter that moves on every committed change to canonical data; part of every cache key.';
INSERT INTO quarry.data_version (version) VALUES (1);

-- ---------------------------------------------------------------------------
-- Versioning: created_at/updated_at/version kept by the database, old rows to history
-- ---------------------------------------------------------------------------
CREATE TABLE canonical.entity_history (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entity            text NOT NULL,
    entity_id         bigint NOT NULL,
    source_system     text NOT NULL,
    source_id         text NOT NULL,
    version           integer NOT NULL,
    row_data          jsonb NOT NULL,
    source_updated_at timestamptz,
    valid_from        timestamptz NOT NULL,
    valid_to          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (entity, entity_id, version)
);
COMMENT ON TABLE canonical.entity_history IS 'Previous versions of every canonical entity row. A row is written here, whole, each time a newer source version replaces it.';
COMMENT ON COLUMN canonical.entity_history.id IS 'Surrogate key.';
COMMENT ON COLUMN canonical.entity_history.entity IS 'Table the version belongs to: organizations, products, orders, order_lines or opportunities.';
COMMENT ON COLUMN canonical.entity_history.entity_id IS 'The id of the current row in that table.';
COMMENT ON COLUMN canonical.entity_history.source_system IS 'Source system of the row (crm, erp, shop, ...).';
COMMENT ON COLUMN canonical.entity_history.source_id IS 'The source system''s own key of the row.';
COMMENT ON COLUMN canonical.entity_history.version IS 'The version number this snapshot had while it was current.';
COMMENT ON COLUMN canonical.entity_history.row_data IS 'The whole row as it was, as JSON (column name to value).';
COMMENT ON COLUMN canonical.entity_history.source_updated_at IS 'The source''s change timestamp of this version.';
COMMENT ON COLUMN canonical.entity_history.valid_from IS 'When this version became current in Quarry.';
COMMENT ON COLUMN canonical.entity_history.valid_to IS 'When this version was replaced in Quarry.';
CREATE INDEX entity_history_lookup_idx ON canonical.entity_history (entity, source_system, source_id, version);

CREATE FUNCTION canonical.track_version() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    bookkeeping constant text[] := ARRAY['id', 'version', 'created_at', 'updated_at', 'ingest_file_id'];
BEGIN
    IF (to_jsonb(NEW) - bookkeeping) = (to_jsonb(OLD) - bookkeeping) THEN
        RETURN NULL; -- identical content: no write, no new version
    END IF;
    INSERT INTO canonical.entity_history
        (entity, entity_id, source_system, source_id, version, row_data, source_updated_at, valid_from)
    VALUES
        (TG_TABLE_NAME, OLD.id, OLD.source_system, OLD.source_id, OLD.version, to_jsonb(OLD),
         OLD.source_updated_at, OLD.updated_at);
    NEW.id := OLD.id;
    NEW.created_at := OLD.created_at;
    NEW.version := OLD.version + 1;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION canonical.track_version() IS 'BEFORE UPDATE trigger of every entity table: skips updates that change nothing, otherwise saves the old row to entity_history and bumps version and updated_at.';

CREATE FUNCTION canonical.stamp_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := 1;
    NEW.created_at := now();
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION canonical.stamp_insert() IS 'BEFORE INSERT trigger of every entity table: a new row is version 1, created and updated now.';

-- ---------------------------------------------------------------------------
-- Entities
-- ---------------------------------------------------------------------------
CREATE TABLE canonical.organizations (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_system      text NOT NULL,
    source_id          text NOT NULL,
    kind               text NOT NULL DEFAULT 'company' CHECK (kind IN ('company', 'person')),
    name               text NOT NULL,
    legal_name         text,
    industry           text,
    country_code       char(2),
    city               text,
    website            text,
    email              text,
    email_domain       text GENERATED ALWAYS AS (lower(nullif(split_part(email, '@', 2), ''))) STORED,
    phone              text,
    vat_id             text,
    tier               text,
    account_type       text,
    parent_source_id   text,
    annual_revenue     numeric(18, 2),
    employee_count     integer CHECK (employee_count >= 0),
    credit_limit       numeric(18, 2),
    is_deleted         boolean NOT NULL DEFAULT false,
    source_created_at  timestamptz,
    source_updated_at  timestamptz,
    attributes         jsonb NOT NULL DEFAULT '{}'::jsonb,
    ingest_file_id     bigint REFERENCES quarry.ingest_files (id),
    version            integer NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source_system, source_id)
);
COMMENT ON TABLE canonical.organizations IS 'Customers and accounts: Salesforce Accounts, SAP customers and shop buyers (companies or persons), one row per source record.';

CREATE TABLE canonical.products (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_system      text NOT NULL,
    source_id          text NOT NULL,
    sku                text NOT NULL,
    name               text NOT NULL,
    category           text,
    unit_price         numeric(18, 2),
    currency           char(3),
    source_created_at  timestamptz,
    source_updated_at  timestamptz,
    attributes         jsonb NOT NULL DEFAULT '{}'::jsonb,
    ingest_file_id     bigint REFERENCES quarry.ingest_files (id),
    version            integer NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source_system, source_id)
);
COMMENT ON TABLE canonical.products IS 'Products (SKUs) as each source system knows them. The SKU is shared across systems (SAP Material = Shopify sku).';

CREATE TABLE canonical.orders (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_system      text NOT NULL,
    source_id          text NOT NULL,
    order_number       text,
    customer_source_id text,
    organization_id    bigint REFERENCES canonical.organizations (id) ON DELETE SET NULL,
    order_date         timestamptz NOT NULL,
    status             text,
    channel            text,
    currency           char(3),
    subtotal_amount    numeric(18, 2),
    tax_amount         numeric(18, 2),
    total_amount       numeric(18, 2) NOT NULL,
    source_created_at  timestamptz,
    source_updated_at  timestamptz,
    attributes         jsonb NOT NULL DEFAULT '{}'::jsonb,
    ingest_file_id     bigint REFERENCES quarry.ingest_files (id),
    version            integer NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source_system, source_id)
);
COMMENT ON TABLE canonical.orders IS 'Sales orders: SAP sales orders and Shopify orders. Lines are in order_lines.';

CREATE TABLE canonical.order_lines (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_system      text NOT NULL,
    source_id          text NOT NULL,
    order_id           bigint NOT NULL REFERENCES canonical.orders (id) ON DELETE CASCADE,
    line_number        integer NOT NULL,
    sku                text,
    product_id         bigint REFERENCES canonical.products (id) ON DELETE SET NULL,
    description        text,
    quantity           numeric(18, 3) NOT NULL,
    unit               text,
    unit_price         numeric(18, 2),
    discount_amount    numeric(18, 2) NOT NULL DEFAULT 0,
    net_amount         numeric(18, 2) NOT NULL,
    currency           char(3),
    source_created_at  timestamptz,
    source_updated_at  timestamptz,
    attributes         jsonb NOT NULL DEFAULT '{}'::jsonb,
    ingest_file_id     bigint REFERENCES quarry.ingest_files (id),
    version            integer NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source_system, source_id),
    UNIQUE (order_id, line_number)
);
COMMENT ON TABLE canonical.order_lines IS 'Lines of an order (SAP to_Item, Shopify line_items). Loaded and versioned together with their order.';

CREATE TABLE canonical.opportunities (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_system          text NOT NULL,
    source_id              text NOT NULL,
    name                   text NOT NULL,
    organization_source_id text,
    organization_id        bigint REFERENCES canonical.organizations (id) ON DELETE SET NULL,
    stage                  text,
    amount                 numeric(18, 2),
    currency               char(3),
    probability            numeric(5, 2) CHECK (probability BETWEEN 0 AND 100),
    is_closed              boolean NOT NULL DEFAULT false,
    is_won                 boolean NOT NULL DEFAULT false,
    close_date             date,
    source_created_at      timestamptz,
    source_updated_at      timestamptz,
    attributes             jsonb NOT NULL DEFAULT '{}'::jsonb,
    ingest_file_id         bigint REFERENCES quarry.ingest_files (id),
    version                integer NOT NULL DEFAULT 1,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source_system, source_id)
);
COMMENT ON TABLE canonical.opportunities IS 'Sales opportunities (Salesforce Opportunity): pipeline and won/lost deals per account.';

CREATE TABLE canonical.entity_links (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    left_id    bigint NOT NULL REFERENCES canonical.organizations (id) ON DELETE CASCADE,
    right_id   bigint NOT NULL REFERENCES canonical.organizations (id) ON DELETE CASCADE,
    method     text NOT NULL CHECK (method IN ('email_domain', 'vat_id', 'name_similarity', 'manual')),
    score      numeric(4, 3) NOT NULL CHECK (score > 0 AND score <= 1),
    evidence   jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (left_id < right_id),
    UNIQUE (left_id, right_id, method)
);
COMMENT ON TABLE canonical.entity_links IS 'Organizations in different source systems recognised as the same real-world company, with how (method) and how sure (score).';
COMMENT ON COLUMN canonical.entity_links.id IS 'Surrogate key.';
COMMENT ON COLUMN canonical.entity_links.left_id IS 'organizations.id of one side (always the smaller id).';
COMMENT ON COLUMN canonical.entity_links.right_id IS 'organizations.id of the other side (always the larger id).';
COMMENT ON COLUMN canonical.entity_links.method IS 'How the link was found: email_domain, vat_id, name_similarity (pg_trgm) or manual.';
COMMENT ON COLUMN canonical.entity_links.score IS 'Confidence from 0 (exclusive) to 1: 1 for exact keys, the trigram similarity for names.';
COMMENT ON COLUMN canonical.entity_links.evidence IS 'The values that matched, as JSON (the shared domain, VAT id or both names).';
COMMENT ON COLUMN canonical.entity_links.created_at IS 'When the link was recorded.';

-- Columns shared by every entity table, documented once per table.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['organizations', 'products', 'orders', 'order_lines', 'opportunities'] LOOP
        EXECUTE format('COMMENT ON COLUMN canonical.%I.id IS %L', t, 'Surrogate key, stable across versions of the row.');
        EXECUTE format('COMMENT ON COLUMN canonical.%I.source_system IS %L', t, 'Source system the row came from (crm, erp, shop, or an analyst-defined source). Unique together with source_id.');
        EXECUTE format('COMMENT ON COLUMN canonical.%I.source_id IS %L', t, 'The source system''s own key, kept verbatim (SAP leading zeros included).');
        EXECUTE format('COMMENT ON COLUMN canonical.%I.source_created_at IS %L', t, 'Creation timestamp reported by the source, if any.');
        EXECUTE format('COMMENT ON COLUMN canonical.%I.source_updated_at IS %L', t, 'The source''s own change timestamp; orders versions (an older one is stale and not applied).');
        EXECUTE format('COMMENT ON COLUMN canonical.%I.attributes IS %L', t, 'Every source field without a canonical column, as JSON (GIN indexed).');
        EXECUTE format('COMMENT ON COLUMN canonical.%I.ingest_file_id IS %L', t, 'The ingest file (canonical.ingest_files.id) that wrote this version; NULL for rows written outside ingest.');
        EXECUTE format('COMMENT ON COLUMN canonical.%I.version IS %L', t, 'Starts at 1 and grows by 1 each time a newer source version changes the row; old versions are in entity_history.');
        EXECUTE format('COMMENT ON COLUMN canonical.%I.created_at IS %L', t, 'When Quarry first stored the row (kept by the database).');
        EXECUTE format('COMMENT ON COLUMN canonical.%I.updated_at IS %L', t, 'When Quarry last changed the row (kept by the database).');
        EXECUTE format('CREATE TRIGGER %I BEFORE INSERT ON canonical.%I FOR EACH ROW EXECUTE FUNCTION canonical.stamp_insert()', t || '_stamp_insert', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE ON canonical.%I FOR EACH ROW EXECUTE FUNCTION canonical.track_version()', t || '_track_version', t);
        EXECUTE format('CREATE INDEX %I ON canonical.%I USING gin (attributes jsonb_path_ops)', t || '_attributes_gin', t);
        EXECUTE format('CREATE INDEX %I ON canonical.%I (source_updated_at)', t || '_source_updated_idx', t);
    END LOOP;
END
$$;

COMMENT ON COLUMN canonical.organizations.kind IS 'company for businesses, person for individual shop buyers.';
COMMENT ON COLUMN canonical.organizations.name IS 'Display name, trimmed, as the source spells it (Unicode kept byte for byte).';
COMMENT ON COLUMN canonical.organizations.legal_name IS 'Full legal name when the source has one (SAP CustomerFullName).';
COMMENT ON COLUMN canonical.organizations.industry IS 'Industry as reported by the source (Salesforce Industry).';
COMMENT ON COLUMN canonical.organizations.country_code IS 'ISO 3166-1 alpha-2 country (see countries).';
COMMENT ON COLUMN canonical.organizations.city IS 'City of the billing address.';
COMMENT ON COLUMN canonical.organizations.website IS 'Web site URL.';
COMMENT ON COLUMN canonical.organizations.email IS 'Primary contact or accounts-payable e-mail address, lower case.';
COMMENT ON COLUMN canonical.organizations.email_domain IS 'Domain part of email (generated); used to link the same company across systems.';
COMMENT ON COLUMN canonical.organizations.phone IS 'Main phone number as given by the source.';
COMMENT ON COLUMN canonical.organizations.vat_id IS 'VAT or tax number (SAP TaxNumber1); used to link companies across systems.';
COMMENT ON COLUMN canonical.organizations.tier IS 'Customer tier (Salesforce Customer_Tier__c: Platinum, Gold, Silver, Bronze).';
COMMENT ON COLUMN canonical.organizations.account_type IS 'Account type or group (Salesforce Type, SAP CustomerAccountGroup).';
COMMENT ON COLUMN canonical.organizations.parent_source_id IS 'source_id of the parent organization in the same source system (Salesforce ParentId); forms the account hierarchy.';
COMMENT ON COLUMN canonical.organizations.annual_revenue IS 'Annual revenue reported for the company, exact to the cent.';
COMMENT ON COLUMN canonical.organizations.employee_count IS 'Number of employees.';
COMMENT ON COLUMN canonical.organizations.credit_limit IS 'Credit limit granted (SAP).';
COMMENT ON COLUMN canonical.organizations.is_deleted IS 'True when the source flags the record as deleted (SAP DeletionIndicator).';

COMMENT ON COLUMN canonical.products.sku IS 'Stock keeping unit, shared across systems (SAP Material, Shopify sku).';
COMMENT ON COLUMN canonical.products.name IS 'Product name or description.';
COMMENT ON COLUMN canonical.products.category IS 'Product category, for analytics by category.';
COMMENT ON COLUMN canonical.products.unit_price IS 'List price per unit, exact to the cent.';
COMMENT ON COLUMN canonical.products.currency IS 'ISO 4217 currency of unit_price.';

COMMENT ON COLUMN canonical.orders.order_number IS 'Human-facing order number (Shopify name such as #1001, SAP SalesOrder).';
COMMENT ON COLUMN canonical.orders.customer_source_id IS 'source_id of the buying organization in the same source system (SAP SoldToParty, Shopify customer.id).';
COMMENT ON COLUMN canonical.orders.organization_id IS 'The buying organization, resolved from customer_source_id; NULL while that customer is unknown.';
COMMENT ON COLUMN canonical.orders.order_date IS 'When the order was placed, as an absolute time (UTC offsets applied).';
COMMENT ON COLUMN canonical.orders.status IS 'Order status as reported by the source (SAP OverallSDProcessStatus, Shopify financial_status).';
COMMENT ON COLUMN canonical.orders.channel IS 'Sales channel: direct (ERP), online (shop), or as the mapping declares.';
COMMENT ON COLUMN canonical.orders.currency IS 'ISO 4217 currency of the amounts.';
COMMENT ON COLUMN canonical.orders.subtotal_amount IS 'Amount before tax, exact to the cent.';
COMMENT ON COLUMN canonical.orders.tax_amount IS 'Tax amount, exact to the cent.';
COMMENT ON COLUMN canonical.orders.total_amount IS 'Total order amount, exact to the cent; the revenue measure of the analytics.';

COMMENT ON COLUMN canonical.order_lines.order_id IS 'The order (orders.id) this line belongs to.';
COMMENT ON COLUMN canonical.order_lines.line_number IS 'Position of the line within its order (SAP SalesOrderItem, Shopify position).';
COMMENT ON COLUMN canonical.order_lines.sku IS 'Product SKU of the line.';
COMMENT ON COLUMN canonical.order_lines.product_id IS 'The product (products.id) in the same source system, resolved from sku; NULL if unknown.';
COMMENT ON COLUMN canonical.order_lines.description IS 'Line text or product title.';
COMMENT ON COLUMN canonical.order_lines.quantity IS 'Quantity ordered (greater than zero).';
COMMENT ON COLUMN canonical.order_lines.unit IS 'Unit of measure (EA, KG, ...).';
COMMENT ON COLUMN canonical.order_lines.unit_price IS 'Price per unit, exact to the cent.';
COMMENT ON COLUMN canonical.order_lines.discount_amount IS 'Discount on the line, exact to the cent.';
COMMENT ON COLUMN canonical.order_lines.net_amount IS 'Net line amount after discount, exact to the cent.';
COMMENT ON COLUMN canonical.order_lines.currency IS 'ISO 4217 currency of the amounts.';

COMMENT ON COLUMN canonical.opportunities.name IS 'Opportunity name.';
COMMENT ON COLUMN canonical.opportunities.organization_source_id IS 'source_id of the account in the same source system (Salesforce AccountId).';
COMMENT ON COLUMN canonical.opportunities.organization_id IS 'The account (organizations.id), resolved from organization_source_id; NULL while unknown.';
COMMENT ON COLUMN canonical.opportunities.stage IS 'Sales stage (Salesforce StageName).';
COMMENT ON COLUMN canonical.opportunities.amount IS 'Opportunity amount, exact to the cent.';
COMMENT ON COLUMN canonical.opportunities.currency IS 'ISO 4217 currency of amount.';
COMMENT ON COLUMN canonical.opportunities.probability IS 'Win probability in percent (0 to 100).';
COMMENT ON COLUMN canonical.opportunities.is_closed IS 'True once the opportunity is closed (won or lost).';
COMMENT ON COLUMN canonical.opportunities.is_won IS 'True when closed and won.';
COMMENT ON COLUMN canonical.opportunities.close_date IS 'Expected or actual close date.';

-- Analytics indexes
CREATE INDEX organizations_parent_idx ON canonical.organizations (source_system, parent_source_id) WHERE parent_source_id IS NOT NULL;
CREATE INDEX organizations_email_domain_idx ON canonical.organizations (email_domain) WHERE email_domain IS NOT NULL;
CREATE INDEX organizations_vat_idx ON canonical.organizations (vat_id) WHERE vat_id IS NOT NULL;
CREATE INDEX organizations_segment_idx ON canonical.organizations (industry, country_code, tier);
CREATE INDEX organizations_name_trgm ON canonical.organizations USING gin (name gin_trgm_ops);
CREATE INDEX products_sku_idx ON canonical.products (sku);
CREATE INDEX products_name_trgm ON canonical.products USING gin (name gin_trgm_ops);
CREATE INDEX orders_date_idx ON canonical.orders (order_date);
CREATE INDEX orders_organization_idx ON canonical.orders (organization_id, order_date);
CREATE INDEX orders_customer_idx ON canonical.orders (source_system, customer_source_id);
CREATE INDEX order_lines_order_idx ON canonical.order_lines (order_id);
CREATE INDEX order_lines_sku_idx ON canonical.order_lines (sku);
CREATE INDEX opportunities_close_idx ON canonical.opportunities (close_date);
CREATE INDEX opportunities_organization_idx ON canonical.opportunities (organization_id);
CREATE INDEX opportunities_account_idx ON canonical.opportunities (source_system, organization_source_id);
CREATE INDEX entity_links_right_idx ON canonical.entity_links (right_id);

-- ---------------------------------------------------------------------------
-- Read-only windows onto the bookkeeping, for analytics (reader role)
-- ---------------------------------------------------------------------------
CREATE VIEW canonical.ingest_files AS
SELECT id, source_system, object_key, content_sha256, size_bytes, mapping_version, status,
       records_read, inserted, updated, unchanged, stale, quarantined,
       started_at, finished_at
FROM quarry.ingest_files;
COMMENT ON VIEW canonical.ingest_files IS 'The ingest ledger: one row per distinct file loaded or attempted, with its counts.';
COMMENT ON COLUMN canonical.ingest_files.id IS 'Ledger id, referenced by ingest_file_id on entity rows.';
COMMENT ON COLUMN canonical.ingest_files.source_system IS 'Source system whose mapping processed the file.';
COMMENT ON COLUMN canonical.ingest_files.object_key IS 'Bucket key (or path under the inbox) of the file.';
COMMENT ON COLUMN canonical.ingest_files.content_sha256 IS 'SHA-256 of the file content, hex; part of the file identity.';
COMMENT ON COLUMN canonical.ingest_files.size_bytes IS 'File size in bytes.';
COMMENT ON COLUMN canonical.ingest_files.mapping_version IS 'Version of the mapping that processed the file.';
COMMENT ON COLUMN canonical.ingest_files.status IS 'processing, loaded or failed.';
COMMENT ON COLUMN canonical.ingest_files.records_read IS 'Records read from the file.';
COMMENT ON COLUMN canonical.ingest_files.inserted IS 'Rows inserted (new source keys).';
COMMENT ON COLUMN canonical.ingest_files.updated IS 'Rows updated to a newer version.';
COMMENT ON COLUMN canonical.ingest_files.unchanged IS 'Records identical to the stored row.';
COMMENT ON COLUMN canonical.ingest_files.stale IS 'Records older than the stored row (not applied).';
COMMENT ON COLUMN canonical.ingest_files.quarantined IS 'Records quarantined.';
COMMENT ON COLUMN canonical.ingest_files.started_at IS 'When processing started.';
COMMENT ON COLUMN canonical.ingest_files.finished_at IS 'When processing finished (NULL while processing).';

CREATE VIEW canonical.quarantine AS
SELECT id, ingest_file_id, source_system, object_key, position, record_type, reason_code, message,
       mapping_version, created_at, resolved_at
FROM quarry.quarantine;
COMMENT ON VIEW canonical.quarantine IS 'Quarantined records (without their raw content): what was rejected, where, and why.';
COMMENT ON COLUMN canonical.quarantine.id IS 'Quarantine entry id.';
COMMENT ON COLUMN canonical.quarantine.ingest_file_id IS 'The ingest file the record came from.';
COMMENT ON COLUMN canonical.quarantine.source_system IS 'Source system of the file.';
COMMENT ON COLUMN canonical.quarantine.object_key IS 'Bucket key of the file.';
COMMENT ON COLUMN canonical.quarantine.position IS 'Zero-based position of the record in the file (line number for NDJSON).';
COMMENT ON COLUMN canonical.quarantine.record_type IS 'Record type as the source names it (Account, A_SalesOrderType, ...).';
COMMENT ON COLUMN canonical.quarantine.reason_code IS 'Machine-readable reason (missing_required, invalid_number, ...).';
COMMENT ON COLUMN canonical.quarantine.message IS 'What is wrong with the record, for a person.';
COMMENT ON COLUMN canonical.quarantine.mapping_version IS 'Version of the mapping that rejected it.';
COMMENT ON COLUMN canonical.quarantine.created_at IS 'When it was quarantined.';
COMMENT ON COLUMN canonical.quarantine.resolved_at IS 'When a replay loaded it (NULL while still quarantined).';

CREATE VIEW canonical.data_version AS SELECT version, changed_at FROM quarry.data_version;
COMMENT ON VIEW canonical.data_version IS 'The current data version: moves on every committed change to canonical data.';
COMMENT ON COLUMN canonical.data_version.version IS 'Monotonic counter.';
COMMENT ON COLUMN canonical.data_version.changed_at IS 'When it last moved.';
