//! The built-in kinds: per kind its defaults, validation and table columns.

pub mod common;
pub mod controllerrevision;
pub mod cron;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod event;
pub mod job;
pub mod namespace;
pub mod node;
pub mod pod;
pub mod replicaset;
pub mod replicationcontroller;
pub mod statefulset;
pub mod template;
pub mod validation;
