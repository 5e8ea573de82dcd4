-- App types: test apps (linked to their original), the individual-developer Biz path, and the
-- operator's registry of Kakao Talk Channels with the channels connected to each app, and when
-- each app was last called and how many calls it was admitted per day (saved about once a
-- second), for suspending inactive apps and for the console's 30-day chart.

-- The status a blocked app had before it was blocked, restored when it is unblocked.
ALTER TABLE apps ADD COLUMN status_before_block TEXT;

ALTER TABLE apps ADD COLUMN original_app_id INTEGER REFERENCES apps (id);

ALTER TABLE apps ADD COLUMN last_active_at INTEGER;

ALTER TABLE app_business ADD COLUMN kind TEXT NOT NULL DEFAULT 'corporate' CHECK (kind IN ('corporate', 'individual'));
ALTER TABLE app_business ADD COLUMN icon_url TEXT;

CREATE TABLE talk_channels (
    id                            TEXT    PRIMARY KEY,
    name                          TEXT    NOT NULL,
    business_registration_number  TEXT    NOT NULL,
    business_channel              INTEGER NOT NULL,
    created_at                    INTEGER NOT NULL
);

CREATE TABLE app_channels (
    app_id        INTEGER NOT NULL REFERENCES apps (id),
    channel_id    TEXT    NOT NULL REFERENCES talk_channels (id),
    connected_at  INTEGER NOT NULL,
    PRIMARY KEY (app_id, channel_id)
);

CREATE TABLE usage_daily (
    app_id     INTEGER NOT NULL REFERENCES apps (id),
    day_start  INTEGER NOT NULL,   -- the local day's first second, in the catalog's time zone
    rule       TEXT    NOT NULL,   -- a quota rule's id, or '' for every admitted call
    calls      INTEGER NOT NULL,
    PRIMARY KEY (app_id, day_start, rule)
);
