//! Small building blocks named after what the user sees.

mod feedback;
mod status_badge;

pub use feedback::{EmptyState, ErrorMessage, Loading};
pub use status_badge::RunStatusBadge;
