-- The server's own PostgreSQL role: it may read and write the queue, but may only read and
-- append to the audit log, and cannot change the schema or disable the log's triggers
-- (only a table's owner can). Run as the schema's owner after `countersign migrate up`,
-- with the role created (CREATE ROLE countersign_app LOGIN PASSWORD '…') and its name in
-- place of countersign_app. Re-run it after each `migrate up` that adds tables.
-- Before PostgreSQL 15 every role may create tables in `public`; take that away first
-- (REVOKE CREATE ON SCHEMA public FROM PUBLIC) if other applications do not rely on it.
GRANT USAGE ON SCHEMA public TO countersign_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO countersign_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO countersign_app;
-- The audit log: append and read only.
REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM countersign_app;
