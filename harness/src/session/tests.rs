use super::*;
use crate::history::OpKind;
use crate::scenario::Workload;
use crate::seed::backoff;

/// An answer to `p` as a service would give it: creates succeed with a
/// booking id derived from the call, cancels and reads succeed.
fn answer(p: &Planned, created: bool) -> Operation {
    let id = format!(
        "b-{}-{}",
        p.call.resource.as_deref().unwrap_or(""),
        p.call.date.as_deref().unwrap_or("")
    );
    let (status, body) = match p.call.kind {
        OpKind::Create if created => (201, format!(r#"{{"booking":{{"id":"{id}"}}}}"#)),
        OpKind::Create => (409, r#"{"code":"ALREADY_BOOKED"}"#.to_owned()),
        _ => (200, "{}".to_owned()),
    };
    Operation {
        index: 0,
        process: "c0".into(),
        intent: p.intent,
        attempt: 1,
        kind: p.call.kind,
        user: p.call.user.clone(),
        resource: p.call.resource.clone(),
        date: p.call.date.clone(),
        key: p.call.key.clone(),
        booking_id: p.call.booking_id.clone(),
        replica: Some(p.replica),
        invoke_ms: 0.0,
        complete_ms: 1.0,
        outcome: if status < 300 {
            Outcome::Ok
        } else {
            Outcome::Fail
        },
        status: Some(status),
        code: None,
        body: Some(body),
        canonical: None,
        replayed: false,
        retry_after: false,
        error: None,
    }
}

fn pace(think_ms: u64) -> Pace {
    Pace {
        deadline: Instant::now() + Duration::from_secs(3600),
        think: Duration::from_millis(think_ms),
        replay_at: Vec::new(),
        replicas: 2,
    }
}

fn create(user: &str, resource: &str, replay: bool, double_submit: bool) -> Intent {
    Intent::Create {
        user: user.into(),
        resource: resource.into(),
        date: "2027-01-01".into(),
        key: Some(format!("k-{resource}")),
        double_submit,
        replay,
    }
}

/// Drives a session to its end, answering every call with `answer`;
/// returns the steps it asked for, in order.
fn drive(session: &mut Session, created: impl Fn(&Planned) -> bool) -> Vec<Step> {
    let mut steps = Vec::new();
    for _ in 0..1000 {
        let Some(step) = session.next(Instant::now()) else {
            return steps;
        };
        if let Step::Perform { calls, .. } = &step {
            for p in calls {
                session.update(&answer(p, created(p)));
            }
        }
        steps.push(step);
    }
    panic!("the session did not end");
}

fn calls(steps: &[Step]) -> Vec<(OpKind, String, Option<String>, usize)> {
    steps
        .iter()
        .flat_map(|s| match s {
            Step::Perform { calls, .. } => calls.clone(),
            Step::Timetable { batches } => batches.iter().flat_map(|(_, c)| c.clone()).collect(),
        })
        .map(|p| (p.call.kind, p.call.user, p.call.booking_id, p.replica))
        .collect()
}

#[test]
fn a_cancel_targets_the_booking_the_session_saw_then_replays_and_rebooks() {
    let plan = vec![
        create("u0", "room_A", true, false),
        Intent::Cancel {
            user: "u0".into(),
            foreign: false,
            rebook: true,
        },
    ];
    let mut session = Session::new(0, plan, pace(0), 7, Seen::default());
    let steps = drive(&mut session, |_| true);
    let id = Some("b-room_A-2027-01-01".to_owned());
    assert_eq!(
        calls(&steps),
        vec![
            (OpKind::Create, "u0".into(), None, 0),
            (OpKind::Cancel, "u0".into(), id.clone(), 0),
            // The freed slot: the held replay goes out now…
            (OpKind::Create, "u0".into(), None, 0),
            // …then the owner books it again, with a fresh key.
            (OpKind::Create, "u0".into(), None, 0),
        ]
    );
    let Step::Perform { calls, .. } = &steps[3] else {
        panic!("a rebook")
    };
    assert_eq!(
        calls[0].call.key.as_deref(),
        Some("b-room_A-2027-01-01-rebook-1")
    );
    assert_eq!(calls[0].intent, 1 | (1 << 31));
}

#[test]
fn a_foreign_cancel_plays_an_intruder_or_waits_for_a_booking_to_exist() {
    let plan = vec![
        Intent::Cancel {
            user: "u1".into(),
            foreign: true,
            rebook: false,
        },
        create("u1", "room_B", false, false),
        Intent::Cancel {
            user: "u1".into(),
            foreign: true,
            rebook: false,
        },
    ];
    let mut session = Session::new(0, plan, pace(100), 7, Seen::default());
    let steps = drive(&mut session, |_| true);
    let id = Some("b-room_B-2027-01-01".to_owned());
    assert_eq!(
        calls(&steps),
        vec![
            // Nothing to cancel yet: no call.
            (OpKind::Create, "u1".into(), None, 0),
            // Its own booking: someone else plays the intruder.
            (OpKind::Cancel, "u1-intruder".into(), id, 0),
        ]
    );
    // The skipped intent's pause is not lost.
    let Step::Perform { think, .. } = &steps[0] else {
        panic!("a create")
    };
    assert!(*think >= Duration::from_millis(50), "{think:?}");

    // Another session's booking, seen by the run: that owner's.
    let seen = Seen::default();
    seen.lock()
        .expect("seen")
        .push(("u7".into(), "b-elsewhere".into()));
    let plan = vec![Intent::Cancel {
        user: "u1".into(),
        foreign: true,
        rebook: false,
    }];
    let steps = drive(&mut Session::new(3, plan, pace(0), 7, seen), |_| true);
    assert_eq!(
        calls(&steps),
        vec![(OpKind::Cancel, "u1".into(), Some("b-elsewhere".into()), 3)]
    );
}

#[test]
fn a_double_submit_goes_to_two_replicas_and_replays_keep_to_their_timetable() {
    let plan = vec![create("u0", "room_C", true, true)];
    let mut p = pace(0);
    p.replay_at = vec![
        ReplayAt {
            after: Duration::from_millis(200),
            replica: None,
        },
        ReplayAt {
            after: Duration::from_secs(2),
            replica: Some(1),
        },
    ];
    let mut session = Session::new(1, plan, p, 7, Seen::default());
    let steps = drive(&mut session, |_| true);
    let Step::Perform { calls, .. } = &steps[0] else {
        panic!("a create")
    };
    assert_eq!(calls.iter().map(|c| c.replica).collect::<Vec<_>>(), [1, 2]);
    let Step::Timetable { batches } = &steps[1] else {
        panic!("a timetable, got {:?}", steps[1])
    };
    let shape: Vec<(Duration, Vec<usize>)> = batches
        .iter()
        .map(|(at, c)| (*at, c.iter().map(|p| p.replica).collect()))
        .collect();
    assert_eq!(
        shape,
        vec![
            (Duration::from_millis(200), vec![1, 2]),
            (Duration::from_secs(2), vec![2]),
        ]
    );
    assert_eq!(steps.len(), 2);
}

#[test]
fn a_refused_create_is_not_cancelled_and_past_the_deadline_only_held_replays_go() {
    let plan = vec![
        create("u0", "room_A", true, false),
        Intent::Cancel {
            user: "u0".into(),
            foreign: false,
            rebook: false,
        },
    ];
    let mut session = Session::new(0, plan, pace(0), 7, Seen::default());
    // Refused (definitive, no booking): nothing to cancel; the replay
    // goes at the end.
    let steps = drive(&mut session, |_| false);
    assert_eq!(
        calls(&steps).iter().map(|c| c.0).collect::<Vec<_>>(),
        [OpKind::Create, OpKind::Create]
    );

    let plan = vec![create("u0", "room_A", false, false)];
    let mut p = pace(0);
    p.deadline = Instant::now();
    let mut late = Session::new(0, plan, p, 7, Seen::default());
    assert_eq!(late.next(Instant::now()), None);
}

/// The whole run's intended calls and pauses, from a seed: every
/// session driven with the same answers.
fn record(seed: u64) -> Vec<Vec<Step>> {
    let w = Workload {
        clients: 3,
        operations: 60,
        cancel_ratio: 0.3,
        foreign_cancel_ratio: 0.3,
        rebook_ratio: 0.5,
        replay_ratio: 0.3,
        double_submit_ratio: 0.2,
        think_time: Duration::from_millis(40),
        ..Workload::default()
    };
    let plans = crate::generator::generate(&w, seed).expect("plan");
    let seen = Seen::default();
    plans
        .into_iter()
        .enumerate()
        .map(|(n, plan)| {
            let mut s = Session::new(n, plan, pace(40), seed, seen.clone());
            drive(&mut s, |p| p.replica % 3 != 2)
        })
        .collect()
}

#[test]
fn a_seed_gives_the_same_calls_pauses_and_backoffs_every_time() {
    let first = record(11);
    assert_eq!(
        first,
        record(11),
        "the same seed, the same calls and pauses"
    );
    assert_ne!(first, record(12), "another seed, another run");
    let thinks: Vec<Duration> = first
        .iter()
        .flatten()
        .filter_map(|s| match s {
            Step::Perform { think, .. } => Some(*think),
            Step::Timetable { .. } => None,
        })
        .filter(|t| !t.is_zero())
        .collect();
    assert!(thinks.len() > 10);
    assert!(
        thinks.windows(2).any(|w| w[0] != w[1]),
        "pauses are drawn, not constant"
    );

    let backoffs = |seed| -> Vec<Duration> {
        (1..6)
            .flat_map(|attempt| (0..20).map(move |intent| backoff(seed, intent, attempt, 0)))
            .collect()
    };
    assert_eq!(backoffs(11), backoffs(11));
    assert_ne!(backoffs(11), backoffs(12));
    assert!(backoffs(11)
        .iter()
        .all(|b| *b >= Duration::from_millis(100) && *b <= Duration::from_millis(1500)));
}
