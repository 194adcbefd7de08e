-- scalper store, version 1. Valid for both PostgreSQL and SQLite.
-- Money is BIGINT paise, instants are BIGINT epoch milliseconds (UTC), trading days are
-- 'YYYY-MM-DD' text (IST calendar days), enums are lowercase text codes.

-- Every event applied, by id: applying an event whose id is here is a no-op.
CREATE TABLE applied_events (
    event_id   BIGINT PRIMARY KEY,
    kind       TEXT   NOT NULL,
    at         BIGINT NOT NULL
);

CREATE TABLE positions (
    id                  TEXT    PRIMARY KEY,
    instrument          TEXT    NOT NULL,
    side                TEXT    NOT NULL,
    quantity            BIGINT  NOT NULL,
    entry_price         BIGINT  NOT NULL,
    opened_at           BIGINT  NOT NULL,
    source              TEXT    NOT NULL,
    state               TEXT    NOT NULL,
    best_price          BIGINT  NOT NULL,
    hwm_pnl             BIGINT  NOT NULL,
    ratchet_stop        BIGINT,
    last_price          BIGINT  NOT NULL,
    last_price_at       BIGINT,
    exit_attempts       BIGINT  NOT NULL,
    exit_reason         TEXT,
    exit_trigger_price  BIGINT,
    exit_trigger_at     BIGINT,
    exit_correlation_id TEXT,
    exit_price          BIGINT,
    exited_at           BIGINT,
    last_rejection      TEXT,
    updated_at          BIGINT  NOT NULL,
    event_id            BIGINT  NOT NULL
);
CREATE INDEX positions_open ON positions (state) WHERE state <> 'exited';

CREATE TABLE orders (
    correlation_id  TEXT   PRIMARY KEY,
    broker_order_id TEXT,
    position_id     TEXT   NOT NULL,
    instrument      TEXT   NOT NULL,
    txn             TEXT   NOT NULL,
    quantity        BIGINT NOT NULL,
    purpose         TEXT   NOT NULL,
    status          TEXT   NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX orders_position ON orders (position_id);
CREATE INDEX orders_open ON orders (status)
    WHERE status NOT IN ('traded', 'cancelled', 'rejected', 'expired');

-- Every status an order went through, keyed by the event that recorded it.
CREATE TABLE order_status_history (
    event_id        BIGINT PRIMARY KEY,
    correlation_id  TEXT   NOT NULL,
    status          TEXT   NOT NULL,
    broker_order_id TEXT,
    at              BIGINT NOT NULL,
    detail          TEXT
);
CREATE INDEX order_status_history_order ON order_status_history (correlation_id, event_id);

CREATE TABLE fills (
    trade_id       TEXT   PRIMARY KEY,
    correlation_id TEXT   NOT NULL,
    order_id       TEXT   NOT NULL,
    instrument     TEXT   NOT NULL,
    txn            TEXT   NOT NULL,
    quantity       BIGINT NOT NULL,
    price          BIGINT NOT NULL,
    at             BIGINT NOT NULL
);
CREATE INDEX fills_order ON fills (correlation_id);

CREATE TABLE closed_trades (
    position_id TEXT   PRIMARY KEY,
    instrument  TEXT   NOT NULL,
    side        TEXT   NOT NULL,
    reason      TEXT   NOT NULL,
    entry_price BIGINT NOT NULL,
    exit_price  BIGINT NOT NULL,
    quantity    BIGINT NOT NULL,
    gross       BIGINT NOT NULL,
    charges     BIGINT NOT NULL,
    net         BIGINT NOT NULL,
    closed_at   BIGINT NOT NULL
);
CREATE INDEX closed_trades_closed_at ON closed_trades (closed_at);

CREATE TABLE daily_pnl (
    trading_day  TEXT   PRIMARY KEY,
    realised_net BIGINT NOT NULL,
    charges      BIGINT NOT NULL,
    trade_count  BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

-- A single row (id = 1).
CREATE TABLE trading_state (
    id          BIGINT PRIMARY KEY CHECK (id = 1),
    state       TEXT   NOT NULL,
    reason      TEXT   NOT NULL,
    since       BIGINT NOT NULL,
    latched_day TEXT,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE audit_log (
    event_id BIGINT PRIMARY KEY,
    at       BIGINT NOT NULL,
    actor    TEXT   NOT NULL,
    action   TEXT   NOT NULL,
    detail   TEXT   NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
