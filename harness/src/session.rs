//! A client's session: the reactive half of the generator. It owns every
//! decision a virtual client makes while the run goes on — the next call,
//! which booking a cancel targets, who plays the intruder, when a replay
//! goes out, the rebook after a cancel, the think time between intents —
//! and learns from each completed operation (Jepsen's generator that sees
//! completions). The runner only performs what [`Session::next`] gives and
//! hands the answers to [`Session::update`], so a session is tested without
//! a stack: given these completions, this is the next call.
//!
//! The plan of intents comes from [`crate::generator::generate`]; the
//! session's own draws (think time) come from its own stream of the seed
//! ([`crate::seed`]), so a seed fixes both the plan and every pause.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::client::Call;
use crate::generator::Intent;
use crate::history::{Operation, Outcome};
use crate::scenario::ReplayAt;
use crate::seed::{stream, THINK_STREAM};

/// Bookings acknowledged to any session of the run: (owner, id). An
/// intruder whose own session holds none of someone else's picks one here.
pub type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// One call to perform: the intent it serves (retries and replays share
/// it) and the replica it goes to first, counted from the session's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub intent: u64,
    pub call: Call,
    pub replica: usize,
}

/// What a session wants next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Wait `think`, then perform `calls` at once (two for a double
    /// submit) and give every answer to [`Session::update`].
    Perform {
        think: Duration,
        calls: Vec<Planned>,
    },
    /// Perform these beside the session, each batch at its time after now,
    /// in order, without reporting back (replays on a timetable).
    Timetable {
        batches: Vec<(Duration, Vec<Planned>)>,
    },
}

/// How a session paces itself.
#[derive(Debug, Clone)]
pub struct Pace {
    /// No new intent starts after this.
    pub deadline: Instant,
    /// The mean pause between intents (drawn from half to one and a half).
    pub think: Duration,
    /// When replays go out after their answer; empty: after the next
    /// acknowledged cancel, or at the end.
    pub replay_at: Vec<ReplayAt>,
    /// How many replicas a timetable replay without one goes to in turn.
    pub replicas: usize,
}

/// A booking this session saw acknowledged, and how it was asked for.
#[derive(Debug, Clone)]
struct Acked {
    owner: String,
    id: String,
    resource: String,
    date: String,
    keyed: bool,
}

/// What the calls in flight were for, to read their answers.
#[derive(Debug)]
enum Awaiting {
    Nothing,
    Create {
        intent: u64,
        call: Call,
        replay: bool,
        expected: usize,
        ops: Vec<Operation>,
    },
    OwnCancel {
        intent: u64,
        booking: Acked,
        rebook: bool,
    },
    Rebook {
        booking: Acked,
    },
}

pub struct Session {
    /// The session's number: its process name is `c{n}` and its first
    /// replica `n`.
    n: usize,
    plan: std::iter::Enumerate<std::vec::IntoIter<Intent>>,
    pace: Pace,
    rng: ChaCha8Rng,
    acknowledged: Vec<Acked>,
    /// Creates to send once more after the next acknowledged cancel, or
    /// at the end.
    replays: Vec<Planned>,
    /// Steps decided by an answer, to go before the next intent, each with
    /// what its answer is for.
    queued: VecDeque<(Step, Awaiting)>,
    awaiting: Awaiting,
    /// Think time of intents that turned out to need no call.
    carried_think: Duration,
    plan_over: bool,
    seen: Seen,
}

impl Session {
    /// Session `n` of a run seeded with `seed`, working through `plan`.
    pub fn new(n: usize, plan: Vec<Intent>, pace: Pace, seed: u64, seen: Seen) -> Session {
        Session {
            n,
            plan: plan.into_iter().enumerate(),
            pace,
            rng: ChaCha8Rng::seed_from_u64(stream(seed, n as u64, THINK_STREAM)),
            acknowledged: Vec::new(),
            replays: Vec::new(),
            queued: VecDeque::new(),
            awaiting: Awaiting::Nothing,
            carried_think: Duration::ZERO,
            plan_over: false,
            seen,
        }
    }

    /// The next step, or `None` when the session is done. Call it again
    /// only after every answer of the previous `Perform` was given to
    /// [`Session::update`].
    pub fn next(&mut self, now: Instant) -> Option<Step> {
        self.finish_awaiting();
        if let Some((step, awaiting)) = self.queued.pop_front() {
            self.awaiting = awaiting;
            return Some(step);
        }
        while !self.plan_over {
            let Some((i, intent)) = self.plan.next() else {
                break;
            };
            if now >= self.pace.deadline {
                break;
            }
            let think = std::mem::take(&mut self.carried_think) + self.think_before(i);
            let intent_id = ((self.n as u64) << 32) | i as u64;
            self.awaiting = Awaiting::Nothing;
            match self.decide(intent_id, intent) {
                Some(calls) => return Some(Step::Perform { think, calls }),
                None => self.carried_think = think,
            }
        }
        self.plan_over = true;
        self.awaiting = Awaiting::Nothing;
        // The plan is over: replays still held go out, one by one.
        if !self.replays.is_empty() {
            let planned = self.replays.remove(0);
            return Some(Step::Perform {
                think: Duration::ZERO,
                calls: vec![planned],
            });
        }
        None
    }

    /// An answer to a call of the last `Perform`.
    pub fn update(&mut self, op: &Operation) {
        match &mut self.awaiting {
            Awaiting::Nothing => {}
            Awaiting::Create { ops, .. } => ops.push(op.clone()),
            Awaiting::OwnCancel {
                intent,
                booking,
                rebook,
            } => {
                if op.outcome == Outcome::Ok {
                    // A slot was just freed: decided creates sent again now
                    // must keep their answers (a refusal included).
                    for planned in self.replays.drain(..) {
                        self.queued.push_back((perform(planned), Awaiting::Nothing));
                    }
                    if *rebook {
                        // The owner books the freed slot again: a fresh intent.
                        let b = booking.clone();
                        let key = b.keyed.then(|| format!("{}-rebook-{intent}", b.id));
                        let call = Call::create(&b.owner, &b.resource, &b.date, key);
                        let step = perform(Planned {
                            intent: *intent | (1 << 31),
                            call,
                            replica: self.n,
                        });
                        self.queued
                            .push_back((step, Awaiting::Rebook { booking: b }));
                    }
                }
                self.awaiting = Awaiting::Nothing;
            }
            Awaiting::Rebook { booking } => {
                if let Some(id) = op.returned_booking_id().filter(|_| !op.replayed) {
                    let b = Acked {
                        id,
                        ..booking.clone()
                    };
                    self.acknowledged.push(b);
                }
                self.awaiting = Awaiting::Nothing;
            }
        }
    }

    /// The pause before intent `i`: none before the first.
    fn think_before(&mut self, i: usize) -> Duration {
        if i == 0 || self.pace.think.is_zero() {
            return Duration::ZERO;
        }
        self.pace.think.mul_f64(self.rng.gen_range(0.5..1.5))
    }

    /// The calls an intent makes now; `None` when it needs none (a cancel
    /// with nothing to cancel).
    fn decide(&mut self, intent: u64, what: Intent) -> Option<Vec<Planned>> {
        let planned = |call: Call, replica: usize| Planned {
            intent,
            call,
            replica,
        };
        match what {
            Intent::Create {
                user,
                resource,
                date,
                key,
                double_submit,
                replay,
            } => {
                let call = Call::create(&user, &resource, &date, key);
                let mut calls = vec![planned(call.clone(), self.n)];
                if double_submit {
                    calls.push(planned(call.clone(), self.n + 1));
                }
                self.awaiting = Awaiting::Create {
                    intent,
                    call,
                    replay,
                    expected: calls.len(),
                    ops: Vec::new(),
                };
                Some(calls)
            }
            Intent::Cancel {
                user,
                foreign: true,
                ..
            } => {
                let (owner, id) = self.foreign_target(&user)?;
                // Someone's booking cancelled by a user who does not own it.
                let intruder = if owner == user {
                    format!("{user}-intruder")
                } else {
                    user
                };
                Some(vec![planned(Call::cancel(&intruder, &id), self.n)])
            }
            Intent::Cancel { user, rebook, .. } => {
                let pick = self
                    .acknowledged
                    .iter()
                    .position(|b| b.owner == user)
                    .or((!self.acknowledged.is_empty()).then_some(0))?;
                let booking = self.acknowledged.remove(pick);
                let call = Call::cancel(&booking.owner, &booking.id);
                self.awaiting = Awaiting::OwnCancel {
                    intent,
                    booking,
                    rebook,
                };
                Some(vec![planned(call, self.n)])
            }
            Intent::List { user } => Some(vec![planned(Call::list(&user), self.n)]),
            Intent::Availability { date } => Some(vec![planned(Call::availability(&date), self.n)]),
        }
    }

    /// Someone else's booking: one this session saw, else one any session saw.
    fn foreign_target(&self, user: &str) -> Option<(String, String)> {
        self.acknowledged
            .iter()
            .find(|b| b.owner != user)
            .or(self.acknowledged.first())
            .map(|b| (b.owner.clone(), b.id.clone()))
            .or_else(|| {
                let all = self.seen.lock().ok()?;
                all.iter().find(|(owner, _)| owner != user).cloned()
            })
    }

    /// A create's answers are all in: remember what was acknowledged and
    /// schedule its replay.
    fn finish_awaiting(&mut self) {
        let Awaiting::Create { expected, ops, .. } = &self.awaiting else {
            return;
        };
        if ops.len() < *expected {
            return;
        }
        let Awaiting::Create {
            intent,
            call,
            replay,
            ops,
            ..
        } = std::mem::replace(&mut self.awaiting, Awaiting::Nothing)
        else {
            return;
        };
        for op in &ops {
            if let Some(id) = op.returned_booking_id().filter(|_| !op.replayed) {
                if let Ok(mut all) = self.seen.lock() {
                    all.push((call.user.clone(), id.clone()));
                }
                self.acknowledged.push(Acked {
                    owner: call.user.clone(),
                    id,
                    resource: call.resource.clone().unwrap_or_default(),
                    date: call.date.clone().unwrap_or_default(),
                    keyed: call.key.is_some(),
                });
            }
        }
        if !(replay && ops.iter().any(Operation::is_definitive)) {
            return;
        }
        if self.pace.replay_at.is_empty() {
            self.replays.push(Planned {
                intent,
                call,
                replica: self.n,
            });
            return;
        }
        let batches = self
            .pace
            .replay_at
            .iter()
            .map(|at| {
                let replicas = match at.replica {
                    Some(r) => r..r + 1,
                    None => 0..self.pace.replicas.max(1),
                };
                let calls = replicas
                    .map(|r| Planned {
                        intent,
                        call: call.clone(),
                        replica: self.n + r,
                    })
                    .collect();
                (at.after, calls)
            })
            .collect();
        self.queued
            .push_front((Step::Timetable { batches }, Awaiting::Nothing));
    }
}

fn perform(planned: Planned) -> Step {
    Step::Perform {
        think: Duration::ZERO,
        calls: vec![planned],
    }
}

#[cfg(test)]
mod tests;
