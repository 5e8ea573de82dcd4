-- The review workflow: account e-mail addresses, Biz information, consent items, the
-- eligibility agreement, permission requests with their history and evidence, the notification
-- outbox, and the audit chain's head (so that deleting the newest events is detected too).

ALTER TABLE accounts ADD COLUMN email TEXT;

CREATE TABLE app_business (
    app_id               INTEGER PRIMARY KEY REFERENCES apps (id),
    registration_number  TEXT    NOT NULL,
    company_name         TEXT    NOT NULL,
    verified_at          INTEGER NOT NULL
);

CREATE TABLE app_consent_items (
    app_id        INTEGER NOT NULL REFERENCES apps (id),
    scope         TEXT    NOT NULL,
    consent_type  TEXT    NOT NULL CHECK (consent_type IN ('required', 'optional', 'on_use')),
    purpose       TEXT    NOT NULL,
    set_at        INTEGER NOT NULL,
    PRIMARY KEY (app_id, scope)
);

CREATE TABLE app_eligibility (
    app_id     INTEGER PRIMARY KEY REFERENCES apps (id),
    agreed_by  INTEGER NOT NULL REFERENCES accounts (id),
    agreed_at  INTEGER NOT NULL
);

CREATE TABLE evidence_files (
    id            INTEGER PRIMARY KEY,
    file_name     TEXT    NOT NULL,
    content_type  TEXT    NOT NULL,
    size          INTEGER NOT NULL,
    sha256        TEXT    NOT NULL,
    content       BLOB    NOT NULL
);

CREATE TABLE permission_requests (
    id               INTEGER PRIMARY KEY,
    app_id           INTEGER NOT NULL REFERENCES apps (id),
    permission       TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('submitted', 'in_review', 'on_hold', 'approved', 'rejected', 'withdrawn')),
    service_url      TEXT    NOT NULL,
    reason           TEXT    NOT NULL,
    usage_scenario   TEXT    NOT NULL DEFAULT '',
    requested_limit  INTEGER,
    requested_rule   TEXT,
    evidence_id      INTEGER REFERENCES evidence_files (id),
    applicant        INTEGER NOT NULL REFERENCES accounts (id),
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    grant_id         INTEGER REFERENCES grants (id)
);
-- At most one open request per app and permission.
CREATE UNIQUE INDEX permission_requests_one_open ON permission_requests (app_id, permission)
    WHERE state IN ('submitted', 'in_review', 'on_hold');
CREATE INDEX permission_requests_by_state ON permission_requests (state, id);

CREATE TABLE permission_request_history (
    id           INTEGER PRIMARY KEY,
    request_id   INTEGER NOT NULL REFERENCES permission_requests (id),
    at           INTEGER NOT NULL,
    actor        INTEGER REFERENCES accounts (id),
    action       TEXT    NOT NULL,
    from_state   TEXT,
    to_state     TEXT    NOT NULL,
    reason_code  TEXT,
    reason       TEXT,
    comment      TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX permission_request_history_by_request ON permission_request_history (request_id, id);

CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY,
    channel          TEXT    NOT NULL CHECK (channel IN ('email', 'webhook')),
    recipient        TEXT    NOT NULL,
    subject          TEXT    NOT NULL,
    body             TEXT    NOT NULL,
    app_id           INTEGER,
    state            TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    next_attempt_at  INTEGER,
    locked_until     INTEGER,
    delivered_at     INTEGER,
    last_error       TEXT
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE state = 'pending';

CREATE TABLE audit_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   INTEGER NOT NULL,
    hash  TEXT    NOT NULL
);
INSERT INTO audit_head (id, seq, hash) SELECT 1, seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1;
