//! The client commands: `panda cronjob …`, `panda job …`, `panda execution …`, `panda dlq …`,
//! `panda queue …`, `panda service …`, `panda monitor …`, `panda alert …`, `panda token …`.
//! Each is a thin call of the API through `panda-client`; none opens the database.

mod alerts;
mod connection;
mod dlq;
mod executions;
mod jobs;
mod logs;
mod monitors;
mod queues;
mod services;
mod spec;
mod tokens;

pub(crate) use alerts::{AlertCommand, alert};
pub(crate) use connection::{Connection, login, status, user};
pub(crate) use dlq::{DlqCommand, dlq};
pub(crate) use executions::{ExecutionCommand, execution};
pub(crate) use jobs::{JobCommand, run};
pub(crate) use monitors::{MonitorCommand, monitor};
pub(crate) use queues::{QueueCommand, queue};
pub(crate) use services::{ServiceCommand, service};
pub(crate) use tokens::{TokenCommand, token};
