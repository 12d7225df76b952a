//! Small building blocks named after what the user sees.

mod app_header;
mod feedback;
mod status_badge;

pub use app_header::{AppHeader, MeResource};
pub use feedback::{EmptyState, ErrorMessage, Loading};
pub use status_badge::RunStatusBadge;
