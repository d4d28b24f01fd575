//! Step 5 directly against each store: concurrent transactions with one key
//! (as after Redis lost its records) and expired keys.

use booking::booking::key::{KeyKind, KeyScope};
use booking::domain::{Booking, BookingDate, BookingStatus, ResourceId, UserId};
use booking::response::StoredResponse;
use booking::store::{BookCommand, BookOutcome};
use futures_util::future::join_all;

use crate::helpers::{spawn_app, Backend};

crate::suite!(
    concurrent_transactions_with_one_key_make_at_most_one_booking,
    an_expired_key_is_taken_over_and_a_live_one_is_not,
);

fn booking(user: &str, resource: &str, date: &str) -> Booking {
    Booking {
        id: uuid::Uuid::now_v7(),
        user_id: UserId::parse(user).expect("user"),
        resource_id: ResourceId::parse(resource).expect("resource"),
        date: BookingDate::parse(date).expect("date"),
        status: BookingStatus::Confirmed,
        created_at: chrono::DateTime::from_timestamp_millis(chrono::Utc::now().timestamp_millis())
            .expect("now"),
        cancelled_at: None,
    }
}

fn created(b: &Booking) -> StoredResponse {
    StoredResponse {
        status: 201,
        body: format!("created {}", b.id),
    }
}

static TAKEN: StoredResponse = StoredResponse {
    status: 409,
    body: String::new(),
};

/// Step 5's command as these tests send it: fingerprint `fp`, no key
/// quota, both the booking's and a refusal's outcome kept until `expires`.
fn command<'a>(
    key: &'a KeyScope,
    booking: &'a Booking,
    created: &'a StoredResponse,
    expires: chrono::DateTime<chrono::Utc>,
) -> BookCommand<'a> {
    BookCommand {
        key,
        fingerprint: "fp",
        expires_at: expires,
        refusal_expires_at: expires,
        booking,
        created,
        already_booked: &TAKEN,
        key_quota: 0,
    }
}

/// Step 5 for each (key, booking) pair at once, straight against the store.
async fn book_at_once(
    app: &crate::helpers::TestApp,
    keys: &[KeyScope],
    bookings: &[Booking],
    responses: &[StoredResponse],
) -> Vec<BookOutcome> {
    let expires = chrono::Utc::now() + chrono::TimeDelta::hours(1);
    join_all(
        keys.iter()
            .zip(bookings)
            .zip(responses)
            .map(|((key, b), r)| {
                let store = app.state.store.clone();
                let cmd = command(key, b, r, expires);
                async move { store.book(&cmd).await.expect("book") }
            }),
    )
    .await
}

/// Ten transactions with one key and ten different slots at once (each
/// passed Redis because Redis had lost the key): one books, the others
/// answer with its outcome.
async fn concurrent_transactions_with_one_key_make_at_most_one_booking(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = KeyScope {
        user_id: UserId::parse("user_alice").expect("user"),
        kind: KeyKind::Client,
        key: "same-key".into(),
    };
    let bookings: Vec<Booking> = (0..10)
        .map(|i| booking("user_alice", "room_A", &format!("2031-01-{:02}", i + 1)))
        .collect();
    let responses: Vec<StoredResponse> = bookings.iter().map(created).collect();
    let keys = vec![key; bookings.len()];
    let outcomes = book_at_once(&app, &keys, &bookings, &responses).await;
    let created_count = outcomes
        .iter()
        .filter(|o| **o == BookOutcome::Created)
        .count();
    assert_eq!(created_count, 1, "{outcomes:?}");
    let winner = outcomes
        .iter()
        .position(|o| *o == BookOutcome::Created)
        .expect("a winner");
    for o in &outcomes {
        if let BookOutcome::Existing(record) = o {
            assert_eq!(
                record.response, responses[winner],
                "every other answer is the winner's"
            );
        }
    }
    assert_eq!(app.count_rows().await, 1);
}

async fn an_expired_key_is_taken_over_and_a_live_one_is_not(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = KeyScope {
        user_id: UserId::parse("user_bob").expect("user"),
        kind: KeyKind::Derived,
        key: "room_B:2031-02-01".into(),
    };
    let first = booking("user_bob", "room_B", "2031-02-01");
    let past = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
    let response = created(&first);
    let cmd = command(&key, &first, &response, past);
    assert_eq!(
        app.state.store.book(&cmd).await.expect("book"),
        BookOutcome::Created
    );
    // The outcome expired at once: the key is free, the slot is not.
    let second = booking("user_bob", "room_B", "2031-02-01");
    let live = chrono::Utc::now() + chrono::TimeDelta::hours(1);
    let response = created(&second);
    let cmd = command(&key, &second, &response, live);
    assert_eq!(
        app.state.store.book(&cmd).await.expect("book"),
        BookOutcome::AlreadyBooked
    );
    // Now the key's live outcome answers.
    let third = booking("user_bob", "room_C", "2031-02-01");
    let response = created(&third);
    let cmd = command(&key, &third, &response, live);
    match app.state.store.book(&cmd).await.expect("book") {
        BookOutcome::Existing(record) => assert_eq!(record.response, TAKEN),
        other => panic!("expected the live outcome, got {other:?}"),
    }
    assert_eq!(app.count_rows().await, 1);
}

/// PostgreSQL's step 5 is one autocommitted statement: these tests reach
/// inside it.
mod postgres {
    use super::*;
    use crate::helpers::{Db, TestApp};
    use booking::deps::DependencyError;
    use std::time::Duration;
    use tokio::task::JoinHandle;

    /// Step 5 for `booking` under `key`, in a task of its own; both answers
    /// are kept for an hour.
    fn book_in_task(
        app: &TestApp,
        key: KeyScope,
        booking: Booking,
    ) -> JoinHandle<Result<BookOutcome, DependencyError>> {
        let store = app.state.store.clone();
        tokio::spawn(async move {
            let expires = chrono::Utc::now() + chrono::TimeDelta::hours(1);
            let created = created(&booking);
            let cmd = command(&key, &booking, &created, expires);
            store.book(&cmd).await
        })
    }

    /// Waits (5 s at most) until `n` backends wait on a lock; whether they did.
    async fn lock_waiters_reach(pool: &sqlx::PgPool, n: i64) -> bool {
        for _ in 0..100 {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
            )
            .fetch_one(pool)
            .await
            .expect("pg_stat_activity");
            if waiting >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// A statement that waits on its key's row while another request
    /// decides the key must fail as a whole: the booking it made (another
    /// slot) is undone, and the other request's outcome is the answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_statement_that_loses_the_key_race_undoes_its_booking() {
        let app = spawn_app(Backend::Real).await;
        let Db::Postgres(pool) = &app.db else {
            panic!("the real backend is PostgreSQL");
        };
        // Another request has written the key's outcome and not committed yet.
        let mut other = pool.begin().await.expect("begin");
        sqlx::query(
            "INSERT INTO idempotency_records (user_id, key_kind, idem_key, fingerprint, \
             resource_id, date, created_at, expires_at, status_code, response_body) \
             VALUES ('user_carol', 'client', 'race-key', 'fp', 'room_A', '2031-03-01', \
             now(), now() + interval '1 hour', 409, 'decided elsewhere')",
        )
        .execute(&mut *other)
        .await
        .expect("the other request's outcome");

        let key = KeyScope {
            user_id: UserId::parse("user_carol").expect("user"),
            kind: KeyKind::Client,
            key: "race-key".into(),
        };
        let waiting = book_in_task(&app, key, booking("user_carol", "room_B", "2031-03-02"));
        // The statement is blocked on the key's row (its booking of room_B
        // is written by then).
        assert!(
            lock_waiters_reach(pool, 1).await,
            "step 5 never waited on the key's row"
        );
        other.commit().await.expect("commit");

        match waiting.await.expect("join").expect("book") {
            BookOutcome::Existing(record) => {
                assert_eq!(record.response.status, 409);
                assert_eq!(record.response.body, "decided elsewhere");
            }
            other => panic!("expected the other request's outcome, got {other:?}"),
        }
        assert_eq!(app.count_rows().await, 0, "the losing booking is undone");
    }

    /// A refusal that is still being committed when the slot's booking is
    /// cancelled must not outlive the cancel: the cancel deletes the slot's
    /// derived outcomes, and must see this one too. Otherwise the user who
    /// was refused without a key hears `ALREADY_BOOKED` for the free slot
    /// for the derived key's whole retention.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refusal_being_committed_when_its_slot_is_cancelled_is_forgotten() {
        let app = spawn_app(Backend::Real).await;
        let Db::Postgres(pool) = &app.db else {
            panic!("the real backend is PostgreSQL");
        };
        // Erin holds the slot.
        let erin = UserId::parse("user_erin").expect("user");
        let held = booking("user_erin", "room_A", "2031-05-01");
        let erins_key = KeyScope {
            user_id: erin.clone(),
            kind: KeyKind::Client,
            key: "erin-1".into(),
        };
        assert_eq!(
            book_in_task(&app, erins_key, held.clone())
                .await
                .expect("join")
                .expect("book"),
            BookOutcome::Created
        );
        // Frank asks for the slot without a key. His statement is held
        // between its conflict check and its commit: an uncommitted row of
        // another transaction on his key's primary key makes it wait there.
        let franks_key = KeyScope {
            user_id: UserId::parse("user_frank").expect("user"),
            kind: KeyKind::Derived,
            key: "room_A:2031-05-01".into(),
        };
        let mut holder = pool.begin().await.expect("begin");
        sqlx::query(
            "INSERT INTO idempotency_records (user_id, key_kind, idem_key, fingerprint, \
             resource_id, date, created_at, expires_at) \
             VALUES ('user_frank', 'derived', 'room_A:2031-05-01', 'fp', 'room_A', \
             '2031-05-01', now(), now() + interval '1 hour')",
        )
        .execute(&mut *holder)
        .await
        .expect("hold frank's key");
        let refusal = book_in_task(
            &app,
            franks_key.clone(),
            booking("user_frank", "room_A", "2031-05-01"),
        );
        assert!(
            lock_waiters_reach(pool, 1).await,
            "frank's statement never waited on his key's row"
        );
        // Erin cancels meanwhile. (It waits for Frank's refusal to commit;
        // a cancel that does not wait is done before the refusal exists.)
        let cancel = {
            let store = app.state.store.clone();
            let id = held.id;
            tokio::spawn(async move { store.cancel(id, &erin, chrono::Utc::now()).await })
        };
        // (Waits until the cancel waits too: 5 s at most.)
        let _ = lock_waiters_reach(pool, 2).await;
        holder
            .rollback()
            .await
            .expect("let frank's statement go on");

        assert_eq!(
            refusal.await.expect("join").expect("book"),
            BookOutcome::AlreadyBooked,
            "frank is refused: erin held the slot when he asked"
        );
        let cancellation = cancel
            .await
            .expect("join")
            .expect("cancel")
            .expect("erin's booking");
        assert_eq!(cancellation.forgotten, vec![franks_key.clone()]);
        let stale = app
            .state
            .store
            .find_outcome(&franks_key, chrono::Utc::now())
            .await
            .expect("find_outcome");
        assert_eq!(stale, None, "the refusal outlived the cancel of its slot");
    }
}

/// SQLite's step 5 runs through a group commit.
mod sqlite {
    use super::*;

    fn sample(metrics: &str, name: &str) -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} is not in /metrics:\n{metrics}"))
    }

    /// Bookings that arrive together are made durable together: 24 at once
    /// on distinct slots all book, with fewer commits than bookings.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bookings_that_arrive_together_share_a_commit() {
        let app = spawn_app(Backend::Embedded).await;
        let keys: Vec<KeyScope> = (0..24)
            .map(|i| KeyScope {
                user_id: UserId::parse("user_dana").expect("user"),
                kind: KeyKind::Client,
                key: format!("group-{i}"),
            })
            .collect();
        let bookings: Vec<Booking> = (0..24)
            .map(|i| booking("user_dana", "room_A", &format!("2031-04-{:02}", i + 1)))
            .collect();
        let responses: Vec<StoredResponse> = bookings.iter().map(created).collect();
        let outcomes = book_at_once(&app, &keys, &bookings, &responses).await;
        assert!(
            outcomes.iter().all(|o| *o == BookOutcome::Created),
            "{outcomes:?}"
        );
        assert_eq!(app.count_rows().await, 24);
        let metrics = app.state.metrics.render();
        assert_eq!(
            sample(&metrics, "booking_store_commit_group_size_sum"),
            24.0
        );
        let commits = sample(&metrics, "booking_store_commit_group_size_count");
        assert!(
            commits < 24.0,
            "{commits} commits for 24 bookings:\n{metrics}"
        );
    }

    /// The writer keeps a connection for itself between groups; a group
    /// that fails (another connection holds the write lock past SQLite's
    /// 5 s busy timeout) writes nothing and answers the group's own error,
    /// and the next group commits on a connection taken from the pool
    /// again. (The dependency deadline is raised above the busy timeout so
    /// that the answer is the group's, not the deadline's.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_after_a_failed_one_commits() {
        let app = crate::helpers::spawn_app_with(Backend::Embedded, |s| {
            s.dependency_timeout = std::time::Duration::from_secs(8);
        })
        .await;
        let crate::helpers::Db::Sqlite(pool) = &app.db else {
            panic!("the embedded backend has a SQLite pool");
        };
        let key = |i: u32| KeyScope {
            user_id: UserId::parse("user_erin").expect("user"),
            kind: KeyKind::Client,
            key: format!("after-failure-{i}"),
        };
        let book = |i: u32| {
            let b = booking("user_erin", "room_A", &format!("2031-05-{:02}", i + 1));
            let r = created(&b);
            let store = app.state.store.clone();
            async move {
                let expires = chrono::Utc::now() + chrono::TimeDelta::hours(1);
                let key = key(i);
                store.book(&command(&key, &b, &r, expires)).await
            }
        };
        assert_eq!(book(0).await.expect("first group"), BookOutcome::Created);

        let mut blocker = pool.acquire().await.expect("a connection of its own");
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *blocker)
            .await
            .expect("take the write lock");
        let failed = book(1).await;
        sqlx::query("ROLLBACK")
            .execute(&mut *blocker)
            .await
            .expect("release the write lock");
        drop(blocker);
        assert!(
            matches!(
                failed,
                Err(booking::deps::DependencyError::Unavailable { .. })
            ),
            "the locked group answered {failed:?}"
        );
        assert_eq!(app.count_rows().await, 1, "the failed group wrote");

        assert_eq!(book(2).await.expect("the next group"), BookOutcome::Created);
        assert_eq!(app.count_rows().await, 2);
        assert_eq!(app.count_idempotency_records().await, 2);
    }

    /// Step 5 records an outcome only in the row its own claim wrote: a
    /// live committed row without an outcome (corrupt: every committed row
    /// has one) is reported, and neither overwritten nor booked over.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_committed_row_without_an_outcome_is_reported_not_overwritten() {
        let app = crate::helpers::spawn_app(Backend::Embedded).await;
        let crate::helpers::Db::Sqlite(pool) = &app.db else {
            panic!("the embedded backend has a SQLite pool");
        };
        let key = KeyScope {
            user_id: UserId::parse("user_frank").expect("user"),
            kind: KeyKind::Client,
            key: "no-outcome".into(),
        };
        let now = chrono::Utc::now();
        let live = now + chrono::TimeDelta::hours(1);
        sqlx::query(
            "INSERT INTO idempotency_records \
             (user_id, key_kind, idem_key, fingerprint, resource_id, date, created_at, expires_at) \
             VALUES ($1, $2, $3, 'fp', 'room_A', '2031-06-01', $4, $5)",
        )
        .bind(&key.user_id)
        .bind(key.kind)
        .bind(&key.key)
        .bind(now - chrono::TimeDelta::seconds(1))
        .bind(live)
        .execute(pool)
        .await
        .expect("a row without an outcome");

        let b = booking("user_frank", "room_A", "2031-06-01");
        let response = created(&b);
        let answer = app
            .state
            .store
            .book(&command(&key, &b, &response, live))
            .await;
        assert!(
            matches!(answer, Err(booking::deps::DependencyError::Internal { .. })),
            "the corrupt row answered {answer:?}"
        );
        assert_eq!(app.count_rows().await, 0, "booked over a corrupt row");
        let status: Option<i32> = sqlx::query_scalar(
            "SELECT status_code FROM idempotency_records WHERE idem_key = 'no-outcome'",
        )
        .fetch_one(pool)
        .await
        .expect("the row is still there");
        assert_eq!(status, None, "the corrupt row was overwritten");
    }

    /// A replay reads a stored outcome the way step 5 does: a status no
    /// HTTP answer has is corruption reported, not an invented `500`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stored_status_out_of_range_is_reported_not_replayed_as_500() {
        let app = crate::helpers::spawn_app(Backend::Embedded).await;
        let crate::helpers::Db::Sqlite(pool) = &app.db else {
            panic!("the embedded backend has a SQLite pool");
        };
        let key = KeyScope {
            user_id: UserId::parse("user_gina").expect("user"),
            kind: KeyKind::Client,
            key: "odd-status".into(),
        };
        let now = chrono::Utc::now();
        sqlx::query(
            "INSERT INTO idempotency_records \
             (user_id, key_kind, idem_key, fingerprint, resource_id, date, created_at, expires_at, \
              status_code, response_body) \
             VALUES ($1, $2, $3, 'fp', 'room_A', '2031-06-02', $4, $5, 70000, '{}')",
        )
        .bind(&key.user_id)
        .bind(key.kind)
        .bind(&key.key)
        .bind(now - chrono::TimeDelta::seconds(1))
        .bind(now + chrono::TimeDelta::hours(1))
        .execute(pool)
        .await
        .expect("a row with an odd status");
        let found = app.state.store.find_outcome(&key, now).await;
        assert!(
            matches!(found, Err(booking::deps::DependencyError::Internal { .. })),
            "the odd row answered {found:?}"
        );
    }
}
