-- Every write that changes an app appends the app's id here, in the write's transaction, and
-- notifies the schema's channel. Nodes sharing the database patch their decision snapshots from
-- it (see ports::ChangeFeed). Writers hold the schema's write lock, so `seq` follows commit order.

CREATE TABLE change_log (
    seq     BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id  BIGINT  NOT NULL,
    at      BIGINT  NOT NULL
);
