-- Grant lifecycle: when each app last exercised each permission (saved about once a second, for
-- reaping unused grants), and the notices sent about a grant (expiry reminders at 30 and 7 days,
-- the unused-grant warning, the reaping), each at most once.
CREATE TABLE grant_usage (
    app_id        BIGINT  NOT NULL REFERENCES apps (id),
    permission    TEXT    NOT NULL,
    last_used_at  BIGINT  NOT NULL,
    PRIMARY KEY (app_id, permission)
);

CREATE TABLE grant_notices (
    grant_id  BIGINT  NOT NULL REFERENCES grants (id),
    kind      TEXT    NOT NULL,
    sent_at   BIGINT  NOT NULL,
    PRIMARY KEY (grant_id, kind)
);
