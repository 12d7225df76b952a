//! Small building blocks named after what the user sees.

mod app_header;
mod cancel_run;
mod change_list;
mod confirm;
mod connection_check;
mod data_table;
mod feedback;
mod field;
mod needs_role;
mod notification_bell;
mod policy_picker;
mod poll;
mod readable_rows;
mod retry_run;
mod run_panel;
mod status_badge;
mod tenant_banners;
mod toasts;

pub use app_header::{AppHeader, MeResource};
pub use cancel_run::CancelRunButton;
pub use change_list::{ChangeList, NotComparedNotes};
pub use confirm::ConfirmButton;
pub use connection_check::{ConnectionBanner, ConnectionCheck};
pub use data_table::{or_absent, Column, DataTable, ABSENT};
pub use feedback::{EmptyState, ErrorMessage, Loading, RefusedOrError};
pub use field::{Field, FieldCheck};
pub use needs_role::NeedsRole;
pub use notification_bell::NotificationBell;
pub use policy_picker::PolicyPicker;
pub use poll::{poll_delay, use_poll_while};
pub use readable_rows::ReadableSections;
pub use retry_run::RetryRunButton;
pub use run_panel::RunPanel;
pub use status_badge::RunStatusBadge;
pub use tenant_banners::TenantBanners;
pub use toasts::{provide_toasts, use_toasts, Toast, ToastQueue, Toasts};
