//! Small building blocks named after what the user sees.

mod app_header;
mod feedback;
mod needs_role;
mod notification_bell;
mod policy_picker;
mod run_panel;
mod status_badge;
mod toasts;

pub use app_header::{AppHeader, MeResource};
pub use feedback::{EmptyState, ErrorMessage, Loading};
pub use needs_role::NeedsRole;
pub use notification_bell::NotificationBell;
pub use policy_picker::PolicyPicker;
pub use run_panel::{run_poll_delay, RunPanel};
pub use status_badge::RunStatusBadge;
pub use toasts::{provide_toasts, use_toasts, Toast, ToastQueue, Toasts};
