//! The booking protocol. [`create`] is `POST /api/bookings` step by step;
//! [`cancel`] is `PATCH /api/bookings/{id}/cancel`. See `docs/PROTOCOL.md`.

pub mod cancel;
pub mod create;
pub mod key;
pub mod replay_cache;
