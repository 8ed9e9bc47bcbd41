-- Confinement of analytics, run by every migration after RESET ROLE, as the
-- connecting login. Functions every role may call by default that let a query act
-- outside its own answer are taken from PUBLIC and given back only to the writer
-- (ingest's advisory locks, the data-version notification), the owner role and
-- this login. The reader, and so a caller's custom SQL, cannot signal or terminate
-- other sessions or see them, take advisory locks, notify listeners, change its own settings
-- with set_config (statement_timeout) or write large objects. Revoking rights on
-- pg_catalog functions needs a superuser (as locally and in CI); where the login
-- is not one (RDS), it is skipped with a notice: there the reader keeps those
-- defaults (see infra/README.md).
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure
          FROM pg_proc p
         WHERE p.pronamespace = 'pg_catalog'::regnamespace
           AND (p.proname IN ('pg_terminate_backend', 'pg_cancel_backend', 'pg_notify', 'set_config',
                              'pg_stat_get_activity',
                              'lo_create', 'lo_creat', 'lo_unlink', 'lo_put', 'lo_from_bytea', 'lowrite',
                              'lo_truncate', 'lo_truncate64', 'lo_open', 'lo_import', 'lo_export')
                OR p.proname LIKE 'pg\_advisory\_%' OR p.proname LIKE 'pg\_try\_advisory\_%')
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO quarry_writer, quarry_owner, %I', f, current_user);
    END LOOP;
    -- Other sessions, of every database on the server, are not the reader's business.
    REVOKE SELECT ON pg_catalog.pg_stat_activity FROM PUBLIC;
    EXECUTE format('GRANT SELECT ON pg_catalog.pg_stat_activity TO quarry_writer, quarry_owner, %I', current_user);
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'not a superuser: the reader keeps the default EXECUTE on signalling, advisory-lock and set_config functions';
END $$;
