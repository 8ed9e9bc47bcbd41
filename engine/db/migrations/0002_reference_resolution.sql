-- Resolving a reference (orders.organization_id, opportunities.organization_id,
-- order_lines.product_id) is bookkeeping, not a new version of the row: the
-- version trigger now applies such updates without bumping version or history.
-- Generated columns (email_domain) are not computed yet in a BEFORE trigger, so
-- they are left out of the comparison (they follow from compared columns).
CREATE OR REPLACE FUNCTION canonical.track_version() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    bookkeeping constant text[] := ARRAY['id', 'version', 'created_at', 'updated_at', 'ingest_file_id', 'email_domain'];
    refs constant text[] := ARRAY['organization_id', 'product_id'];
BEGIN
    IF (to_jsonb(NEW) - bookkeeping - refs) = (to_jsonb(OLD) - bookkeeping - refs) THEN
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
COMMENT ON FUNCTION canonical.track_version() IS 'BEFORE UPDATE trigger of every entity table: skips updates that change nothing, applies resolved references (organization_id, product_id) without a new version, otherwise saves the old row to entity_history and bumps version and updated_at.';

-- Sources without a line total (Shopify line_items) leave net_amount null:
-- the database derives it, so every line has one.
CREATE FUNCTION canonical.fill_net_amount() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.net_amount IS NULL THEN
        NEW.net_amount := round(NEW.quantity * NEW.unit_price - coalesce(NEW.discount_amount, 0), 2);
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION canonical.fill_net_amount() IS 'BEFORE INSERT/UPDATE trigger of order_lines: net_amount defaults to quantity × unit_price − discount_amount.';
CREATE TRIGGER order_lines_fill_net BEFORE INSERT OR UPDATE ON canonical.order_lines
    FOR EACH ROW EXECUTE FUNCTION canonical.fill_net_amount();
COMMENT ON COLUMN canonical.order_lines.net_amount IS 'Net line amount after discount, exact to the cent; derived as quantity × unit_price − discount_amount when the source has no line total.';

-- Company names compared across systems: lower case, punctuation and legal forms
-- removed ("ACME CORP" and "Acme Corp." compare equal).
CREATE FUNCTION canonical.normalized_company_name(name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT btrim(regexp_replace(
        regexp_replace(lower(name), '[^[:alnum:][:space:]]', ' ', 'g'),
        '\m(gmbh|ag|inc|corp|corporation|co|ltd|limited|llc|sa|s a|plc|kk|ab|bv|nv|srl|spa|holdings|group)\M', ' ', 'g'))
$$;
COMMENT ON FUNCTION canonical.normalized_company_name(text) IS 'A company name for comparison across systems: lower case, punctuation and legal forms (GmbH, Inc., S.A., ...) removed.';

-- A re-sent order may renumber its lines; the uniqueness of line numbers is
-- checked at commit, when the whole order has been rewritten.
ALTER TABLE canonical.order_lines
    DROP CONSTRAINT order_lines_order_id_line_number_key,
    ADD CONSTRAINT order_lines_order_id_line_number_key UNIQUE (order_id, line_number) DEFERRABLE INITIALLY DEFERRED;

-- After each load the link refresh reads the organizations that file wrote.
CREATE INDEX organizations_ingest_file_idx ON canonical.organizations (ingest_file_id);
