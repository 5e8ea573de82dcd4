-- permgate SQLite schema, version 1. Times are Unix seconds (UTC). JSON is stored as TEXT.

CREATE TABLE accounts (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    role        TEXT    NOT NULL CHECK (role IN ('developer', 'reviewer', 'admin')),
    token_hash  TEXT    NOT NULL UNIQUE,
    blocked     INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
);

CREATE TABLE apps (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL,
    company_name  TEXT    NOT NULL,
    category      TEXT    NOT NULL,
    owner_id      INTEGER NOT NULL REFERENCES accounts (id),
    status        TEXT    NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'blocked', 'suspended')),
    created_at    INTEGER NOT NULL
);

CREATE TABLE app_members (
    app_id      INTEGER NOT NULL REFERENCES apps (id),
    account_id  INTEGER NOT NULL REFERENCES accounts (id),
    role        TEXT    NOT NULL CHECK (role IN ('owner', 'editor', 'reader')),
    PRIMARY KEY (app_id, account_id)
);
CREATE INDEX app_members_by_account ON app_members (account_id);

CREATE TABLE app_keys (
    id          INTEGER PRIMARY KEY,
    app_id      INTEGER NOT NULL REFERENCES apps (id),
    kind        TEXT    NOT NULL CHECK (kind IN ('rest_api', 'javascript', 'native_app', 'admin')),
    value       TEXT    UNIQUE,            -- NULL for secret kinds
    hash        TEXT    NOT NULL UNIQUE,   -- SHA-256 of the key, hex
    hint        TEXT    NOT NULL,
    platforms   TEXT    NOT NULL DEFAULT '{}',
    created_at  INTEGER NOT NULL
);
CREATE INDEX app_keys_by_app ON app_keys (app_id);

CREATE TABLE app_products (
    app_id     INTEGER NOT NULL REFERENCES apps (id),
    product    TEXT    NOT NULL,
    activated  INTEGER NOT NULL,
    PRIMARY KEY (app_id, product)
);

CREATE TABLE grants (
    id             INTEGER PRIMARY KEY,
    app_id         INTEGER NOT NULL REFERENCES apps (id),
    permission     TEXT    NOT NULL,
    key_id         INTEGER,                -- bound to one key, or NULL for the whole app
    source         TEXT    NOT NULL,
    granted_by     INTEGER REFERENCES accounts (id),
    granted_at     INTEGER NOT NULL,
    expires_at     INTEGER,
    params         TEXT    NOT NULL DEFAULT '{}',
    reason         TEXT    NOT NULL DEFAULT '',
    revoked_at     INTEGER,
    revoked_by     INTEGER REFERENCES accounts (id),
    revoke_reason  TEXT
);
CREATE INDEX grants_live_by_app ON grants (app_id) WHERE revoked_at IS NULL;

CREATE TABLE audit_events (
    seq        INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    actor      INTEGER,
    action     TEXT    NOT NULL,
    target     TEXT    NOT NULL,
    app_id     INTEGER,
    before     TEXT    NOT NULL,
    after      TEXT    NOT NULL,
    prev_hash  TEXT    NOT NULL,
    hash       TEXT    NOT NULL UNIQUE
);
CREATE INDEX audit_events_by_app ON audit_events (app_id, seq);
