//! What keeps gray releases moving after they start: the ramp [`scheduler`] and the error
//! rate [`guard`] (both run on one node of a cluster).

pub mod guard;
pub mod scheduler;
