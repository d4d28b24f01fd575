-- Step 5 on PostgreSQL is one autocommitted statement. When a concurrent
-- request with the same idempotency key commits its outcome while this
-- statement waits on the key's row, the statement must fail as a whole, so
-- that a booking it made is undone: it calls this function, whose error
-- (SQLSTATE BK001) the service reads as "the key was decided by another
-- request" and answers with that request's outcome.
CREATE FUNCTION booking_key_decided_concurrently() RETURNS TIMESTAMPTZ
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION 'idempotency key decided by a concurrent request'
        USING ERRCODE = 'BK001';
END
$$;
