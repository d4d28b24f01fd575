//! criterion benchmarks of the booking service: see `benches/booking.rs`
//! and `docs/PERFORMANCE.md`. Run with `cargo bench -p booking-benches`.
