-- Paid usage per app, and the quota counters a node counting in memory saves about once a second.

CREATE TABLE paid_usage (
    app_id       INTEGER PRIMARY KEY REFERENCES apps (id),
    rules        TEXT    NOT NULL,   -- JSON array of quota rule ids
    daily_cap    INTEGER NOT NULL,
    monthly_cap  INTEGER NOT NULL
);

CREATE TABLE quota_counters (
    rule_id       TEXT    NOT NULL,
    scope         INTEGER NOT NULL,  -- the 64-bit scope hash, stored as a signed integer
    window_start  INTEGER NOT NULL,
    window_end    INTEGER NOT NULL,
    count         INTEGER NOT NULL,
    PRIMARY KEY (rule_id, scope, window_start)
);
CREATE INDEX quota_counters_by_end ON quota_counters (window_end);
