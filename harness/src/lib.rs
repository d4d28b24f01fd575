//! The booking service's test and chaos harness.
//!
//! - [`infra`]: starts and stops the real parts as private processes on free
//!   loopback ports with throwaway data directories: `redis-server`,
//!   PostgreSQL (`initdb` + `postgres`) and replicas of the `booking` binary.
//!   Every child runs in its own process group and is stopped by pid when
//!   its handle is dropped, so nothing outlives a test.

pub mod infra;
