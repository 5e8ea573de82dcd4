-- The recent decision log: one row per (app, credential, user scopes, API), with the path last
-- called, the code it was last decided with (and, when shadow mode allowed it, the code
-- enforcement would have given and what is in shadow mode), how many calls and when last. Kept to the most
-- recently seen rows (see permgate_core::decision_log::KEEP), so that a catalog change can be
-- previewed by replaying real traffic.
CREATE TABLE decision_log (
    app_id    INTEGER NOT NULL,
    key_kind  TEXT    NOT NULL,
    key_id    INTEGER NOT NULL, -- 0 for user tokens
    scopes    TEXT    NOT NULL,
    api       TEXT    NOT NULL,
    method    TEXT    NOT NULL,
    path      TEXT    NOT NULL,
    code      INTEGER NOT NULL,
    would_code INTEGER NOT NULL DEFAULT 0,
    shadow    TEXT    NOT NULL DEFAULT '',
    calls     INTEGER NOT NULL,
    last_at   INTEGER NOT NULL,
    PRIMARY KEY (app_id, key_kind, key_id, scopes, api)
);
CREATE INDEX decision_log_by_last_at ON decision_log (last_at);
