-- Bookings. The partial unique index is what makes a double booking
-- impossible: at most one confirmed booking per resource and date.
CREATE TABLE bookings (
    id           BLOB        PRIMARY KEY,
    user_id      TEXT        NOT NULL,
    resource_id  TEXT        NOT NULL,
    date         TEXT        NOT NULL,
    status       TEXT        NOT NULL CHECK (status IN ('confirmed', 'cancelled')),
    created_at   TEXT        NOT NULL,
    cancelled_at TEXT       ,
    -- The idempotency key that produced this booking (for audits and checkers).
    key_kind     TEXT        NOT NULL,
    idem_key     TEXT        NOT NULL
);

CREATE UNIQUE INDEX bookings_one_confirmed_per_slot
    ON bookings (resource_id, date) WHERE status = 'confirmed';
CREATE INDEX bookings_by_user ON bookings (user_id, created_at DESC);
CREATE INDEX bookings_by_date ON bookings (date) WHERE status = 'confirmed';

-- The definitive outcome of each idempotency key, written in the same
-- transaction as the booking it produced, so the database alone can answer
-- any retry even when Redis has lost everything.
CREATE TABLE idempotency_records (
    user_id       TEXT        NOT NULL,
    key_kind      TEXT        NOT NULL CHECK (key_kind IN ('client', 'derived')),
    idem_key      TEXT        NOT NULL,
    fingerprint   TEXT        NOT NULL,
    resource_id   TEXT        NOT NULL,
    date          TEXT        NOT NULL,
    status_code   INTEGER,
    response_body TEXT,
    booking_id    BLOB,
    created_at    TEXT        NOT NULL,
    expires_at    TEXT        NOT NULL,
    PRIMARY KEY (user_id, key_kind, idem_key)
);

CREATE INDEX idempotency_records_derived_by_slot
    ON idempotency_records (resource_id, date) WHERE key_kind = 'derived';
CREATE INDEX idempotency_records_by_expiry ON idempotency_records (expires_at);
