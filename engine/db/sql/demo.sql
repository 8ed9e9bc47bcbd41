-- Deterministic demo data written straight into the canonical model
-- (`quarry demo`). {{SCALE}} is replaced by a positive integer. Re-running
-- replaces the previous demo rows (source systems crm, erp, shop).
SELECT setseed(0.42);

DELETE FROM canonical.entity_links;
DELETE FROM canonical.entity_history;
DELETE FROM canonical.order_lines;
DELETE FROM canonical.orders;
DELETE FROM canonical.opportunities;
DELETE FROM canonical.products;
DELETE FROM canonical.organizations;

CREATE TEMP TABLE demo_words ON COMMIT DROP AS
SELECT ARRAY['Acme','Globex','Initech','Umbrella','Stark','Wayne','Tyrell','Cyberdyne','Soylent','Wonka',
             'Vandelay','Tailspin','Yoyodyne','Weyland','Contoso','Fabrikam','Northwind','Adventure','Litware','Proseware',
             'Müller','Åkesson','Nguyễn','Dupont','Rossi','Kowalski','Tanaka','Silva','Haddad','Okafor'] AS names,
       ARRAY['Holdings','Inc.','GmbH','Ltd','S.A.','Group','Partners','AG','Corp','Industries'] AS suffixes,
       ARRAY['Manufacturing','Finance','Retail','Healthcare','Technology','Logistics','Education','Energy'] AS industries,
       ARRAY['Platinum','Gold','Silver','Bronze'] AS tiers,
       ARRAY(SELECT code FROM canonical.countries ORDER BY code) AS countries;

-- CRM accounts: 400 per scale unit, every 5th one a child of an earlier account.
INSERT INTO canonical.organizations (source_system, source_id, kind, name, industry, country_code, email, tier,
    account_type, parent_source_id, annual_revenue, employee_count, source_created_at, source_updated_at, attributes)
SELECT 'crm', 'A' || lpad(i::text, 6, '0'), 'company',
       w.names[1 + (i % 30)] || ' ' || w.suffixes[1 + ((i / 30) % 10)] || CASE WHEN i >= 300 THEN ' ' || (i / 300)::text ELSE '' END,
       w.industries[1 + floor(random() * 8)::int],
       w.countries[1 + floor(random() * array_length(w.countries, 1))::int],
       'ap@' || lower(w.names[1 + (i % 30)]) || i || '.example',
       w.tiers[1 + floor(random() * 4)::int],
       CASE WHEN random() < 0.7 THEN 'Customer - Direct' ELSE 'Customer - Channel' END,
       CASE WHEN i % 5 = 0 AND i > 5 THEN 'A' || lpad((i / 5)::text, 6, '0') END,
       round((1 + random() * 99)::numeric * 100000, 2),
       (10 + random() * 5000)::int,
       timestamptz '2022-01-01' + (random() * 500) * interval '1 day',
       timestamptz '2023-06-01' + (random() * 300) * interval '1 day',
       jsonb_build_object('Website', 'https://www.' || lower(w.names[1 + (i % 30)]) || i || '.example', 'Rating', (ARRAY['Hot','Warm','Cold'])[1 + (i % 3)])
FROM generate_series(1, 400 * {{SCALE}}) AS i, demo_words w;

-- ERP customers: 300 per unit; two thirds share the CRM account's AP address.
INSERT INTO canonical.organizations (source_system, source_id, kind, name, legal_name, country_code, email, vat_id,
    account_type, credit_limit, is_deleted, source_created_at, source_updated_at, attributes)
SELECT 'erp', lpad((100000 + i)::text, 10, '0'), 'company',
       upper(w.names[1 + (i % 30)] || ' ' || w.suffixes[1 + ((i / 30) % 10)]),
       upper(w.names[1 + (i % 30)] || ' ' || w.suffixes[1 + ((i / 30) % 10)]),
       w.countries[1 + floor(random() * array_length(w.countries, 1))::int],
       CASE WHEN i % 3 <> 0 THEN 'ap@' || lower(w.names[1 + (i % 30)]) || i || '.example' END,
       'VAT' || lpad((i * 7919 % 1000000000)::text, 9, '0'),
       'KUNA', round((random() * 50000)::numeric, 2), i % 97 = 0,
       timestamptz '2022-03-01' + (random() * 400) * interval '1 day',
       timestamptz '2023-03-01' + (random() * 400) * interval '1 day',
       jsonb_build_object('CustomerAccountGroup', 'KUNA', 'SalesOrganization', '1010')
FROM generate_series(1, 300 * {{SCALE}}) AS i, demo_words w;

-- Shop buyers: 500 per unit, persons, every 10th an accounts-payable address of a CRM company.
INSERT INTO canonical.organizations (source_system, source_id, kind, name, email, country_code, source_created_at, source_updated_at)
SELECT 'shop', (207119000 + i)::text,
       CASE WHEN i % 10 = 0 THEN 'company' ELSE 'person' END,
       CASE WHEN i % 10 = 0 THEN 'Accounts Payable' ELSE (ARRAY['Gus','Ana','Li','Sam','Eva','Omar','Mia','Raj'])[1 + (i % 8)] || ' ' || w.names[1 + (i % 30)] END,
       CASE WHEN i % 10 = 0 THEN 'ap@' || lower(w.names[1 + (i % 30)]) || i || '.example'
            ELSE lower((ARRAY['gus','ana','li','sam','eva','omar','mia','raj'])[1 + (i % 8)]) || '.' || i || '@mail.example' END,
       w.countries[1 + floor(random() * array_length(w.countries, 1))::int],
       timestamptz '2023-01-01' + (random() * 500) * interval '1 day',
       timestamptz '2023-06-01' + (random() * 300) * interval '1 day'
FROM generate_series(1, 500 * {{SCALE}}) AS i, demo_words w;

INSERT INTO canonical.products (source_system, source_id, sku, name, category, unit_price, currency)
SELECT s, 'SKU-' || lpad(p::text, 4, '0'), 'SKU-' || lpad(p::text, 4, '0'),
       (ARRAY['Widget','Gadget','Install Kit','Spare Battery','Sensor','Controller','Training Day','Consulting Hour','Support Plan','Cable Set','Mount','License'])[p],
       (ARRAY['Hardware','Hardware','Accessories','Accessories','Hardware','Hardware','Services','Services','Services','Accessories','Accessories','Software'])[p],
       (ARRAY[49.90, 89.00, 39.95, 14.50, 129.00, 349.00, 1200.00, 171.00, 990.00, 19.90, 24.50, 499.00])[p],
       'USD'
FROM generate_series(1, 12) AS p, unnest(ARRAY['erp', 'shop']) AS s;

-- Orders over the 24 months up to 2024-06-30, 2000 ERP and 2000 shop orders per unit.
INSERT INTO canonical.orders (source_system, source_id, order_number, customer_source_id, order_date, status, channel, currency, subtotal_amount, tax_amount, total_amount, source_updated_at)
SELECT 'erp', (4000000 + i)::text, (4000000 + i)::text,
       lpad((100000 + 1 + floor(random() * 300 * {{SCALE}})::int)::text, 10, '0'),
       timestamptz '2022-07-01' + (random() * 730) * interval '1 day',
       (ARRAY['A','B','C'])[1 + (i % 3)], 'direct', 'USD', 0, 0, 0, NULL
FROM generate_series(1, 2000 * {{SCALE}}) AS i;
INSERT INTO canonical.orders (source_system, source_id, order_number, customer_source_id, order_date, status, channel, currency, subtotal_amount, tax_amount, total_amount, source_updated_at)
SELECT 'shop', (450789000 + i)::text, '#' || (1000 + i),
       (207119000 + 1 + floor(random() * 500 * {{SCALE}})::int)::text,
       timestamptz '2022-07-01' + (random() * 730) * interval '1 day',
       (ARRAY['paid','paid','paid','refunded'])[1 + (i % 4)], 'online', 'USD', 0, 0, 0, NULL
FROM generate_series(1, 2000 * {{SCALE}}) AS i;
UPDATE canonical.orders o SET organization_id = g.id
FROM canonical.organizations g
WHERE g.source_system = o.source_system AND g.source_id = o.customer_source_id;

INSERT INTO canonical.order_lines (source_system, source_id, order_id, line_number, sku, product_id, description, quantity, unit, unit_price, net_amount, currency)
SELECT o.source_system, o.source_id || '/' || n * 10, o.id, n * 10, p.sku, p.id, p.name, q.qty, 'EA', p.unit_price,
       round(q.qty * p.unit_price, 2), 'USD'
FROM canonical.orders o
CROSS JOIN LATERAL generate_series(1, 1 + (o.id % 4)::int) AS n
CROSS JOIN LATERAL (SELECT 1 + floor(random() * 12)::int + 0 * n AS pn, (1 + floor(random() * 20))::numeric + 0 * n AS qty) q
JOIN canonical.products p ON p.source_system = o.source_system AND p.sku = 'SKU-' || lpad(q.pn::text, 4, '0');

UPDATE canonical.orders o SET subtotal_amount = s.total, total_amount = s.total, source_updated_at = o.order_date
FROM (SELECT order_id, sum(net_amount) AS total FROM canonical.order_lines GROUP BY order_id) s
WHERE s.order_id = o.id;
-- Demo rows are loaded fresh: reset the version bookkeeping the UPDATEs above caused.
DELETE FROM canonical.entity_history;
ALTER TABLE canonical.orders DISABLE TRIGGER orders_track_version;
UPDATE canonical.orders SET version = 1;
ALTER TABLE canonical.orders ENABLE TRIGGER orders_track_version;

-- Opportunities: three per CRM account.
INSERT INTO canonical.opportunities (source_system, source_id, name, organization_source_id, organization_id, stage, amount, currency, probability, is_closed, is_won, close_date, source_updated_at)
SELECT 'crm', 'O' || g.source_id || '-' || k, g.name || ' - ' || (ARRAY['New Logo','Renewal','Upsell'])[k], g.source_id, g.id,
       st.stage, round((1000 + random() * 500000)::numeric, 2), 'USD', st.prob, st.closed, st.won,
       date '2022-07-01' + (random() * 900)::int, timestamptz '2024-06-30'
FROM canonical.organizations g
CROSS JOIN generate_series(1, 3) AS k
CROSS JOIN LATERAL (SELECT (ARRAY['Prospecting','Negotiation','Closed Won','Closed Lost'])[1 + floor(random() * 4)::int + 0 * k] AS stage) s0
CROSS JOIN LATERAL (SELECT s0.stage,
       CASE s0.stage WHEN 'Prospecting' THEN 20 WHEN 'Negotiation' THEN 60 WHEN 'Closed Won' THEN 100 ELSE 0 END AS prob,
       s0.stage LIKE 'Closed%' AS closed, s0.stage = 'Closed Won' AS won) st
WHERE g.source_system = 'crm';

-- A few newer source versions, so history and versions are not empty.
UPDATE canonical.organizations SET tier = 'Platinum', source_updated_at = source_updated_at + interval '30 days'
WHERE source_system = 'crm' AND id % 17 = 0;

-- Cross-system links by shared e-mail domain.
INSERT INTO canonical.entity_links (left_id, right_id, method, score, evidence)
SELECT least(a.id, b.id), greatest(a.id, b.id), 'email_domain', 1.0, jsonb_build_object('domain', a.email_domain)
FROM canonical.organizations a
JOIN canonical.organizations b ON a.email_domain = b.email_domain AND a.source_system < b.source_system
WHERE a.email_domain IS NOT NULL AND a.email_domain <> 'mail.example'
ON CONFLICT DO NOTHING;

UPDATE quarry.data_version SET version = version + 1, changed_at = now();
