//! Microsoft Graph client (issue 4).
