-- One customer across systems (issue 15): companies above organizations.
--
-- Links are proposed by the matching rules of mappings/companies.yaml (each
-- recorded under the rule's name, with a reason); a link scoring at least the
-- rules' auto_accept, or confirmed by a person, joins two organizations into
-- one company. Every organization belongs to exactly one company (a connected
-- component of the accepted links), kept in the ingest transaction, with a
-- golden row derived by the declared survivorship.

-- Links are named after the rule that made them.
ALTER TABLE canonical.entity_links DROP CONSTRAINT entity_links_method_check;
ALTER TABLE canonical.entity_links ADD CONSTRAINT entity_links_method_check
    CHECK (method ~ '^[a-z][a-z0-9_]{0,62}$');
ALTER TABLE canonical.entity_links ADD COLUMN reason text;
ALTER TABLE canonical.entity_links ADD COLUMN rules_version text;
COMMENT ON COLUMN canonical.entity_links.method IS 'The matching rule of mappings/companies.yaml that made the link (vat_id, email_domain, name_country, similar_name, ...), or manual for a pair a person confirmed.';
COMMENT ON COLUMN canonical.entity_links.score IS 'Confidence from 0 (exclusive) to 1: the rule''s score (times the similarity for similar rules); links at or above the rules'' auto_accept join companies without review.';
COMMENT ON COLUMN canonical.entity_links.reason IS 'Why, in words: "VAT DE123456789 equal", "names ''acme'' ~ ''acme industries'' (0.72)".';
COMMENT ON COLUMN canonical.entity_links.rules_version IS 'Version of the company rules that made the link (NULL for links made before the rules existed and for manual links).';

CREATE TABLE canonical.link_decisions (
    left_id    bigint NOT NULL REFERENCES canonical.organizations (id) ON DELETE CASCADE,
    right_id   bigint NOT NULL REFERENCES canonical.organizations (id) ON DELETE CASCADE,
    decision   text NOT NULL CHECK (decision IN ('confirmed', 'rejected')),
    decided_by text NOT NULL,
    decided_at timestamptz NOT NULL DEFAULT now(),
    note       text,
    PRIMARY KEY (left_id, right_id),
    CHECK (left_id < right_id)
);
COMMENT ON TABLE canonical.link_decisions IS 'What people decided about pairs of organizations (quarry links confirm|reject|split, or the admin API): a confirmed pair is one company whatever the rules say; a rejected pair is never linked again by a rule.';
COMMENT ON COLUMN canonical.link_decisions.left_id IS 'organizations.id of one side (the smaller id).';
COMMENT ON COLUMN canonical.link_decisions.right_id IS 'organizations.id of the other side (the larger id).';
COMMENT ON COLUMN canonical.link_decisions.decision IS 'confirmed or rejected.';
COMMENT ON COLUMN canonical.link_decisions.decided_by IS 'Who decided: the operating-system user of the CLI, or the API key''s name.';
COMMENT ON COLUMN canonical.link_decisions.decided_at IS 'When.';
COMMENT ON COLUMN canonical.link_decisions.note IS 'Why, as the person wrote it (split records "split").';
CREATE INDEX link_decisions_right_idx ON canonical.link_decisions (right_id);

CREATE SEQUENCE canonical.companies_id_seq;
CREATE TABLE canonical.companies (
    id             bigint PRIMARY KEY DEFAULT nextval('canonical.companies_id_seq'),
    kind           text NOT NULL CHECK (kind IN ('company', 'person')),
    name           text NOT NULL,
    legal_name     text,
    industry       text,
    country_code   char(2),
    city           text,
    tier           text,
    account_type   text,
    email_domain   text,
    vat_id         text,
    website        text,
    phone          text,
    annual_revenue numeric(18, 2),
    employee_count integer,
    value_sources  jsonb NOT NULL DEFAULT '{}'::jsonb,
    member_count   integer NOT NULL,
    source_systems text[] NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
ALTER SEQUENCE canonical.companies_id_seq OWNED BY canonical.companies.id;
COMMENT ON TABLE canonical.companies IS 'Real-world customers: each a cluster of organizations (from any source systems) joined by accepted links, with a golden row whose every value comes from one member by the survivorship of mappings/companies.yaml. A company keeps its id while it keeps the largest part of its members (see the README, "One customer across systems").';
COMMENT ON COLUMN canonical.companies.id IS 'Stable company id: kept across re-ingest, new links and splits by the part holding most of the old members.';
COMMENT ON COLUMN canonical.companies.kind IS 'company when any member is a company, else person.';
COMMENT ON COLUMN canonical.companies.name IS 'Golden name (survivorship of name).';
COMMENT ON COLUMN canonical.companies.legal_name IS 'Golden legal name.';
COMMENT ON COLUMN canonical.companies.industry IS 'Golden industry.';
COMMENT ON COLUMN canonical.companies.country_code IS 'Golden ISO country code.';
COMMENT ON COLUMN canonical.companies.city IS 'Golden city.';
COMMENT ON COLUMN canonical.companies.tier IS 'Golden tier.';
COMMENT ON COLUMN canonical.companies.account_type IS 'Golden account type.';
COMMENT ON COLUMN canonical.companies.email_domain IS 'Golden e-mail domain.';
COMMENT ON COLUMN canonical.companies.vat_id IS 'Golden VAT id.';
COMMENT ON COLUMN canonical.companies.website IS 'Golden website.';
COMMENT ON COLUMN canonical.companies.phone IS 'Golden phone number.';
COMMENT ON COLUMN canonical.companies.annual_revenue IS 'Golden annual revenue.';
COMMENT ON COLUMN canonical.companies.employee_count IS 'Golden employee count.';
COMMENT ON COLUMN canonical.companies.value_sources IS 'Where each golden value came from: {"industry": {"organization_id": 12, "source_system": "crm", "source_id": "001..."}, ...}; fields without a value are absent.';
COMMENT ON COLUMN canonical.companies.member_count IS 'Organizations in the company.';
COMMENT ON COLUMN canonical.companies.source_systems IS 'Source systems of the members, sorted.';
COMMENT ON COLUMN canonical.companies.created_at IS 'When the company id was first given.';
COMMENT ON COLUMN canonical.companies.updated_at IS 'When its members or golden values last changed.';

CREATE TABLE canonical.company_members (
    organization_id bigint PRIMARY KEY REFERENCES canonical.organizations (id) ON DELETE CASCADE,
    company_id      bigint NOT NULL REFERENCES canonical.companies (id),
    since           timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE canonical.company_members IS 'The company of every organization (exactly one each).';
COMMENT ON COLUMN canonical.company_members.organization_id IS 'organizations.id.';
COMMENT ON COLUMN canonical.company_members.company_id IS 'companies.id.';
COMMENT ON COLUMN canonical.company_members.since IS 'When the organization joined this company.';
CREATE INDEX company_members_company_idx ON canonical.company_members (company_id);

-- The rules the links and companies were last computed with.
CREATE TABLE quarry.company_rules (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    version     text NOT NULL,
    fingerprint text NOT NULL,
    rules       jsonb NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE quarry.company_rules IS 'The company rules (mappings/companies.yaml, as JSON) every link and company was computed with; registering different rules recomputes them all.';

-- Blocking keys and exact keys the rules look up: a file's values are index
-- lookups, spelled exactly as quarry_db::companies writes them. The normalised
-- name is stored once per row version, so no rule normalises a name again.
ALTER TABLE canonical.organizations
    ADD COLUMN name_key text GENERATED ALWAYS AS (
        btrim(regexp_replace(canonical.normalized_company_name(name), '\s+', ' ', 'g'))) STORED;
COMMENT ON COLUMN canonical.organizations.name_key IS 'The name as the matching rules compare it: lower case, punctuation and legal forms (GmbH, Inc., ...) removed, single spaces (derived from name).';
-- name_key is generated, like email_domain: not content. In a BEFORE trigger a
-- generated column is not computed yet, so the version functions leave both out.
CREATE OR REPLACE FUNCTION canonical.version_content(row_data jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT row_data - ARRAY['id', 'version', 'created_at', 'updated_at', 'ingest_file_id',
                            'email_domain', 'name_key', 'organization_id', 'product_id', 'order_id']
$$;

CREATE OR REPLACE FUNCTION canonical.track_version() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    bookkeeping constant text[] := ARRAY['id', 'version', 'created_at', 'updated_at', 'ingest_file_id', 'email_domain', 'name_key'];
    refs constant text[] := ARRAY['organization_id', 'product_id'];
BEGIN
    IF (to_jsonb(NEW) - bookkeeping - refs) = (to_jsonb(OLD) - bookkeeping - refs) THEN
        IF NEW.version IS DISTINCT FROM OLD.version
           AND (to_jsonb(NEW) - 'version' - 'email_domain' - 'name_key') = (to_jsonb(OLD) - 'version' - 'email_domain' - 'name_key') THEN
            RETURN NEW; -- renumbered by canonical.place_late_version
        END IF;
        IF (to_jsonb(NEW) - bookkeeping) = (to_jsonb(OLD) - bookkeeping) THEN
            RETURN NULL; -- identical content: no write, no new version
        END IF;
        -- only resolved references changed: keep the version and its bookkeeping
        NEW.id := OLD.id;
        NEW.created_at := OLD.created_at;
        NEW.version := OLD.version;
        NEW.updated_at := OLD.updated_at;
        NEW.ingest_file_id := OLD.ingest_file_id;
        RETURN NEW;
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

CREATE INDEX organizations_name_key_idx ON canonical.organizations (name_key);
CREATE INDEX organizations_name_first_word_idx ON canonical.organizations (split_part(name_key, ' ', 1));
CREATE INDEX organizations_name_prefix3_idx ON canonical.organizations (left(replace(name_key, ' ', ''), 3));
CREATE INDEX organizations_vat_key_idx ON canonical.organizations (upper(regexp_replace(vat_id, '[^[:alnum:]]+', '', 'g')));

-- The registered rules' version and threshold, for the reader (the API lists
-- links and tells accepted from proposed ones).
CREATE VIEW quarry_ops.company_rules AS
SELECT version, fingerprint, (rules->>'auto_accept')::numeric AS auto_accept, applied_at
  FROM quarry.company_rules;
COMMENT ON VIEW quarry_ops.company_rules IS 'The company rules every link and company was computed with: version, fingerprint, auto_accept.';
