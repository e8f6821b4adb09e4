//! Panda's long-running services. Each is a struct with `async fn run(self, shutdown)`; its
//! dependencies (the store, the clock) are passed in, and one pass of its loop is a method of
//! its own that tests drive with a [`TestClock`](panda_core::TestClock), without sleeping.

mod scheduler;

pub use scheduler::{Scheduler, SchedulerHandle, Tick};
