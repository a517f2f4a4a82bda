//! Scheduled jobs (issue #9): `schedule` (cron in a zone, Vixie's DST rules), `state` (the
//! state file: the job table, slots, runs, history), `scheduler` (what is due: a pure decision),
//! `run` (a run of a job and its record), `cli` (`berth jobs`).

pub mod cli;
pub mod prune;
pub mod run;
pub mod schedule;
pub mod scheduler;
pub mod state;

pub use run::{RunContext, execute, run_job, run_task};
pub use schedule::{Schedule, ScheduleError};
pub use state::{JobsError, JobsState, load, record_table};
