-- What real exports need: people (Salesforce Contacts and Leads, shop customers
-- as persons), the billing and shipping countries of orders, and a ledger that
-- counts skipped records, values kept in attributes because their column could
-- not hold them (warnings, with one row each), and records whose nested rows
-- were not delivered (OData navigations left deferred).

CREATE TABLE canonical.people (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_system          text NOT NULL,
    source_id              text NOT NULL,
    kind                   text NOT NULL DEFAULT 'contact',
    name                   text NOT NULL,
    first_name             text,
    last_name              text,
    title                  text,
    email                  text,
    email_domain           text GENERATED ALWAYS AS (lower(nullif(split_part(email, '@', 2), ''))) STORED,
    phone                  text,
    organization_source_id text,
    organization_id        bigint REFERENCES canonical.organizations (id) ON DELETE SET NULL,
    company_name           text,
    lead_status            text,
    country_code           char(2),
    city                   text,
    is_deleted             boolean NOT NULL DEFAULT false,
    source_created_at      timestamptz,
    source_updated_at      timestamptz,
    attributes             jsonb NOT NULL DEFAULT '{}'::jsonb,
    ingest_file_id         bigint REFERENCES quarry.ingest_files (id),
    version                integer NOT NULL DEFAULT 1,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source_system, source_id)
);
COMMENT ON TABLE canonical.people IS 'People: Salesforce Contacts and Leads and any source''s persons, one row per source record, linked to their organization when the source names it.';

DO $$
BEGIN
    EXECUTE format('COMMENT ON COLUMN canonical.people.id IS %L', 'Surrogate key, stable across versions of the row.');
    EXECUTE format('COMMENT ON COLUMN canonical.people.source_system IS %L', 'Source system the row came from (crm, erp, shop, or an analyst-defined source). Unique together with source_id.');
    EXECUTE format('COMMENT ON COLUMN canonical.people.source_id IS %L', 'The source system''s own key, kept verbatim.');
    EXECUTE format('COMMENT ON COLUMN canonical.people.source_created_at IS %L', 'Creation timestamp reported by the source, if any.');
    EXECUTE format('COMMENT ON COLUMN canonical.people.source_updated_at IS %L', 'The source''s own change timestamp; orders versions (an older one is stale and not applied).');
    EXECUTE format('COMMENT ON COLUMN canonical.people.attributes IS %L', 'Every source field without a canonical column, as JSON (GIN indexed).');
    EXECUTE format('COMMENT ON COLUMN canonical.people.ingest_file_id IS %L', 'The ingest file (canonical.ingest_files.id) that wrote this version; NULL for rows written outside ingest.');
    EXECUTE format('COMMENT ON COLUMN canonical.people.version IS %L', 'Starts at 1 and grows by 1 each time a newer source version changes the row; old versions are in entity_history.');
    EXECUTE format('COMMENT ON COLUMN canonical.people.created_at IS %L', 'When Quarry first stored the row (kept by the database).');
    EXECUTE format('COMMENT ON COLUMN canonical.people.updated_at IS %L', 'When Quarry last changed the row (kept by the database).');
END
$$;
CREATE TRIGGER people_stamp_insert BEFORE INSERT ON canonical.people FOR EACH ROW EXECUTE FUNCTION canonical.stamp_insert();
CREATE TRIGGER people_track_version BEFORE UPDATE ON canonical.people FOR EACH ROW EXECUTE FUNCTION canonical.track_version();
CREATE INDEX people_attributes_gin ON canonical.people USING gin (attributes jsonb_path_ops);
CREATE INDEX people_source_updated_idx ON canonical.people (source_updated_at);
CREATE INDEX people_organization_idx ON canonical.people (organization_id);
CREATE INDEX people_account_idx ON canonical.people (source_system, organization_source_id);
CREATE INDEX people_email_domain_idx ON canonical.people (email_domain) WHERE email_domain IS NOT NULL;

COMMENT ON COLUMN canonical.people.kind IS 'contact (a person at a customer), lead (a prospect not yet converted) or as the mapping declares.';
COMMENT ON COLUMN canonical.people.name IS 'Full name as the source gives it or as first and last name joined.';
COMMENT ON COLUMN canonical.people.first_name IS 'Given name.';
COMMENT ON COLUMN canonical.people.last_name IS 'Family name.';
COMMENT ON COLUMN canonical.people.title IS 'Job title.';
COMMENT ON COLUMN canonical.people.email IS 'E-mail address, lower case.';
COMMENT ON COLUMN canonical.people.email_domain IS 'Domain part of email (generated).';
COMMENT ON COLUMN canonical.people.phone IS 'Phone number as given by the source.';
COMMENT ON COLUMN canonical.people.organization_source_id IS 'source_id of the person''s organization in the same source system (Salesforce AccountId).';
COMMENT ON COLUMN canonical.people.organization_id IS 'The organization (organizations.id), resolved from organization_source_id; NULL while unknown.';
COMMENT ON COLUMN canonical.people.company_name IS 'Company named by the source when there is no organization record (Salesforce Lead Company).';
COMMENT ON COLUMN canonical.people.lead_status IS 'Lead status (Salesforce Lead Status); NULL for contacts.';
COMMENT ON COLUMN canonical.people.country_code IS 'ISO 3166-1 alpha-2 country of the person''s address.';
COMMENT ON COLUMN canonical.people.city IS 'City of the person''s address.';
COMMENT ON COLUMN canonical.people.is_deleted IS 'True when the source flags the record as deleted.';

ALTER TABLE canonical.orders
    ADD COLUMN billing_country_code char(2),
    ADD COLUMN shipping_country_code char(2);
COMMENT ON COLUMN canonical.orders.billing_country_code IS 'ISO 3166-1 alpha-2 country of the billing address (Shopify billing_address.country_code).';
COMMENT ON COLUMN canonical.orders.shipping_country_code IS 'ISO 3166-1 alpha-2 country of the shipping address (Shopify shipping_address.country_code).';

ALTER TABLE quarry.ingest_files
    ADD COLUMN skipped bigint NOT NULL DEFAULT 0,
    ADD COLUMN warnings bigint NOT NULL DEFAULT 0,
    ADD COLUMN children_not_delivered bigint NOT NULL DEFAULT 0;

CREATE TABLE quarry.ingest_warnings (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ingest_file_id bigint NOT NULL REFERENCES quarry.ingest_files (id),
    source_system  text NOT NULL,
    object_key     text NOT NULL,
    position       bigint NOT NULL,
    entity         text NOT NULL,
    source_id      text NOT NULL,
    column_name    text NOT NULL,
    reason_code    text NOT NULL,
    message        text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE quarry.ingest_warnings IS 'Values present in a record that their column could not hold (on_invalid: keep): the row loaded with the column empty and the source value in attributes.';
CREATE INDEX ingest_warnings_file_idx ON quarry.ingest_warnings (ingest_file_id);
CREATE INDEX ingest_warnings_column_idx ON quarry.ingest_warnings (source_system, entity, column_name);

CREATE OR REPLACE VIEW canonical.ingest_files AS
SELECT id, source_system, object_key, content_sha256, size_bytes, mapping_version, status,
       records_read, inserted, updated, unchanged, stale, quarantined,
       started_at, finished_at, skipped, warnings, children_not_delivered
FROM quarry.ingest_files;
COMMENT ON COLUMN canonical.ingest_files.skipped IS 'Records left out by a skip rule of the mapping (deleted markers, record types not mapped).';
COMMENT ON COLUMN canonical.ingest_files.warnings IS 'Values kept in attributes because their column could not hold them (see ingest_warnings).';
COMMENT ON COLUMN canonical.ingest_files.children_not_delivered IS 'Records loaded without their nested rows because the export did not expand them (stored nested rows kept).';

CREATE VIEW canonical.ingest_warnings AS
SELECT id, ingest_file_id, source_system, object_key, position, entity, source_id, column_name,
       reason_code, message, created_at
FROM quarry.ingest_warnings;
COMMENT ON VIEW canonical.ingest_warnings IS 'Values a column could not hold, kept in the row''s attributes instead: where, which column, and why.';
COMMENT ON COLUMN canonical.ingest_warnings.id IS 'Warning id.';
COMMENT ON COLUMN canonical.ingest_warnings.ingest_file_id IS 'The file (ingest_files.id) whose record carried the value.';
COMMENT ON COLUMN canonical.ingest_warnings.source_system IS 'Source system of the file.';
COMMENT ON COLUMN canonical.ingest_warnings.object_key IS 'Bucket key of the file.';
COMMENT ON COLUMN canonical.ingest_warnings.position IS 'Record position in the file (0-based index in a document, line or row number otherwise).';
COMMENT ON COLUMN canonical.ingest_warnings.entity IS 'Table of the row (organizations, orders, ...).';
COMMENT ON COLUMN canonical.ingest_warnings.source_id IS 'source_id of the row.';
COMMENT ON COLUMN canonical.ingest_warnings.column_name IS 'The column left empty.';
COMMENT ON COLUMN canonical.ingest_warnings.reason_code IS 'Why the value could not be stored (invalid_value, invalid_date, ...).';
COMMENT ON COLUMN canonical.ingest_warnings.message IS 'What was found and what was expected.';
COMMENT ON COLUMN canonical.ingest_warnings.created_at IS 'When the warning was recorded.';

-- The mapping version is part of what was applied: the same file delivered again
-- under the same mapping version is a duplicate; under a new version (after a
-- mapping fix, by `quarry backfill`) it is applied again.
UPDATE quarry.ingest_files SET mapping_version = '' WHERE mapping_version IS NULL;
ALTER TABLE quarry.ingest_files ALTER COLUMN mapping_version SET DEFAULT '';
ALTER TABLE quarry.ingest_files ALTER COLUMN mapping_version SET NOT NULL;
ALTER TABLE quarry.ingest_files DROP CONSTRAINT ingest_files_source_system_object_key_content_sha256_key;
ALTER TABLE quarry.ingest_files ADD CONSTRAINT ingest_files_identity
    UNIQUE (source_system, object_key, content_sha256, mapping_version);
COMMENT ON COLUMN canonical.ingest_files.mapping_version IS 'Version of the mapping that processed the file; part of the file identity (a new version applies the file again).';
