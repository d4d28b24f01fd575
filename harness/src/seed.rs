//! Every random draw of a run comes from the scenario's seed, each part of
//! the run (a session, an intent's retries, a proxy connection) from a
//! stream of its own, so that the draws of one part do not depend on how
//! many another made first: a seed repeats the same pauses, backoffs and
//! jitter whatever order the clients run in.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The pause before retry `attempt + 1` of `intent`: exponential, with
/// jitter drawn from the run's seed for this intent and attempt, so a seed
/// fixes every backoff whatever order the clients run in.
pub fn backoff(seed: u64, intent: u64, attempt: u32, first_replica: usize) -> Duration {
    let base = 50u64.saturating_mul(1 << attempt.min(5)).min(1000);
    let part = intent ^ (u64::from(attempt) << 48) ^ ((first_replica as u64) << 40);
    let jitter =
        ChaCha8Rng::seed_from_u64(stream(seed, part, BACKOFF_STREAM)).gen_range(0..=base / 2);
    Duration::from_millis(base + jitter)
}

/// Which of a run's random streams a generator draws from.
pub const THINK_STREAM: u64 = 1;
pub const BACKOFF_STREAM: u64 = 2;
pub const JITTER_STREAM: u64 = 3;

/// A seed for one stream of one part of a run (a session, an intent, a
/// proxy connection), derived from the scenario's seed: every random draw
/// of the harness comes from the seed, and streams do not overlap.
pub fn stream(seed: u64, part: u64, which: u64) -> u64 {
    // SplitMix64's finaliser over the three inputs: cheap and well mixed.
    let mut z =
        seed ^ part.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ which.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
