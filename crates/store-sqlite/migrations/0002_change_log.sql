-- Every write that changes an app appends the app's id here, in the write's transaction. Nodes
-- reading the same database patch their decision snapshots from it (see ports::ChangeFeed).

CREATE TABLE change_log (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id  INTEGER NOT NULL,
    at      INTEGER NOT NULL
);
