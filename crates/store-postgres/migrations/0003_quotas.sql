-- Paid usage per app, and the quota counters a node counting in memory saves about once a second.

CREATE TABLE paid_usage (
    app_id       BIGINT PRIMARY KEY REFERENCES apps (id),
    rules        JSONB  NOT NULL,   -- array of quota rule ids
    daily_cap    BIGINT NOT NULL,
    monthly_cap  BIGINT NOT NULL
);

CREATE TABLE quota_counters (
    rule_id       TEXT   NOT NULL,
    scope         BIGINT NOT NULL,  -- the 64-bit scope hash, stored as a signed integer
    window_start  BIGINT NOT NULL,
    window_end    BIGINT NOT NULL,
    count         BIGINT NOT NULL,
    PRIMARY KEY (rule_id, scope, window_start)
);
CREATE INDEX quota_counters_by_end ON quota_counters (window_end);
