//! The generator: what each virtual client intends to do, drawn from the
//! scenario's seed so a run can be repeated exactly.

use anyhow::Result;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::scenario::{parse_date, KeyStyle, Workload};

/// One thing a user wants; retries of it reuse its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    Create {
        user: String,
        resource: String,
        date: String,
        /// `None`: send no `Idempotency-Key`.
        key: Option<String>,
        /// Fire two attempts at once (a double click).
        double_submit: bool,
        /// Send it once more, with its key, at the end of the plan.
        replay: bool,
    },
    /// Cancel one of this client's acknowledged bookings (chosen at run time).
    Cancel {
        user: String,
        /// Sent by a user who does not own the booking.
        foreign: bool,
        /// After an acknowledged cancel, the owner books the slot again.
        rebook: bool,
    },
    List {
        user: String,
    },
    /// Read the free resources of a date.
    Availability {
        date: String,
    },
}

/// The dates a workload books, `first_date` and the days after it.
pub fn workload_dates(workload: &Workload) -> Result<Vec<String>> {
    let first = parse_date(&workload.first_date)?;
    Ok((0..workload.dates as u64)
        .map(|i| (first + chrono::Days::new(i)).to_string())
        .collect())
}

/// The intents of each client, in order. Deterministic for a seed.
pub fn generate(workload: &Workload, seed: u64) -> Result<Vec<Vec<Intent>>> {
    let dates = workload_dates(workload)?;
    let mut plans = Vec::with_capacity(workload.clients);
    for client in 0..workload.clients {
        let mut rng =
            ChaCha8Rng::seed_from_u64(seed ^ (client as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let count = workload.operations / workload.clients
            + usize::from(client < workload.operations % workload.clients);
        let mut used_keys: Vec<(String, String)> = Vec::new();
        let mut intents = Vec::with_capacity(count);
        for n in 0..count {
            let user = workload.user(rng.gen_range(0..workload.users));
            let roll: f64 = rng.gen();
            if roll < workload.cancel_ratio {
                let foreign = rng.gen_bool(workload.foreign_cancel_ratio.clamp(0.0, 1.0));
                let rebook = rng.gen_bool(workload.rebook_ratio.clamp(0.0, 1.0));
                intents.push(Intent::Cancel {
                    user,
                    foreign,
                    rebook,
                });
                continue;
            }
            if roll < workload.cancel_ratio + workload.list_ratio {
                intents.push(Intent::List { user });
                continue;
            }
            if roll < workload.cancel_ratio + workload.list_ratio + workload.availability_ratio {
                let date = dates[rng.gen_range(0..dates.len())].clone();
                intents.push(Intent::Availability { date });
                continue;
            }
            let resource = workload.resources[rng.gen_range(0..workload.resources.len())].clone();
            let date = dates[rng.gen_range(0..dates.len())].clone();
            let reuse = rng.gen_bool(workload.key_reuse_ratio.clamp(0.0, 1.0));
            let no_key = rng.gen_bool(workload.no_key_ratio.clamp(0.0, 1.0));
            let double_submit = rng.gen_bool(workload.double_submit_ratio.clamp(0.0, 1.0));
            let replay = rng.gen_bool(workload.replay_ratio.clamp(0.0, 1.0));
            let (user, key) = match used_keys.iter().find(|_| reuse).cloned() {
                // The same user and key, a (probably) different payload.
                Some((user, key)) => (user, Some(key)),
                None if no_key => (user, None),
                None => {
                    let key = match workload.key_style {
                        KeyStyle::Unique => format!(
                            "{}s{seed}-c{client}-{n}-{:08x}",
                            workload.namespace,
                            rng.gen::<u32>()
                        ),
                        // Small counters, as naive clients use: the same
                        // key comes from every client and every user.
                        KeyStyle::Counter => format!("{}{}", workload.namespace, n + 1),
                    };
                    used_keys.push((user.clone(), key.clone()));
                    (user, Some(key))
                }
            };
            intents.push(Intent::Create {
                user,
                resource,
                date,
                key,
                double_submit,
                replay,
            });
        }
        plans.push(intents);
    }
    Ok(plans)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload() -> Workload {
        Workload {
            operations: 50,
            clients: 3,
            key_reuse_ratio: 0.2,
            double_submit_ratio: 0.2,
            ..Workload::default()
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_plan() {
        let a = generate(&workload(), 42).expect("plan");
        assert_eq!(a, generate(&workload(), 42).expect("plan"));
        assert_ne!(a, generate(&workload(), 43).expect("plan"));
    }

    #[test]
    fn operations_are_split_across_clients() {
        let plan = generate(&workload(), 1).expect("plan");
        assert_eq!(plan.len(), 3);
        assert_eq!(plan.iter().map(Vec::len).sum::<usize>(), 50);
    }

    #[test]
    fn counter_keys_collide_across_clients() {
        let w = Workload {
            key_style: KeyStyle::Counter,
            no_key_ratio: 0.0,
            cancel_ratio: 0.0,
            list_ratio: 0.0,
            clients: 2,
            operations: 6,
            ..Workload::default()
        };
        let plan = generate(&w, 1).expect("plan");
        let key = |i: &Intent| match i {
            Intent::Create { key, .. } => key.clone(),
            _ => None,
        };
        assert_eq!(key(&plan[0][0]), Some("1".into()));
        assert_eq!(key(&plan[0][0]), key(&plan[1][0]));
    }

    #[test]
    fn ratios_shape_the_plan() {
        let w = Workload {
            operations: 400,
            clients: 1,
            cancel_ratio: 0.0,
            list_ratio: 0.0,
            no_key_ratio: 1.0,
            ..Workload::default()
        };
        let plan = generate(&w, 5).expect("plan");
        assert!(plan[0]
            .iter()
            .all(|i| matches!(i, Intent::Create { key: None, .. })));
    }
}
