//! Writing policies back to Graph (restore). INTERFACE ONLY until the write path lands.

use serde_json::Value;

use super::{GraphClient, GraphError, GraphFuture, PolicyType, TenantCredentials};
use crate::domain::reason_code::ReasonCode;
use crate::domain::snapshot::CaptureFormat;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DirectoryKind {
    Group,
    AssignmentFilter,
    ScopeTag,
}

pub struct WriteRequest<'a> {
    pub policy_type: PolicyType,
    pub target: Option<&'a str>,
    pub backup: &'a Value,
    pub format: CaptureFormat,
    pub live: Option<&'a Value>,
    pub include_assignments: bool,
    pub include_scope_tags: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub graph_id: String,
    pub created: bool,
    pub writes: u32,
}

pub trait PolicyWriter: Send + Sync {
    fn object_exists<'a>(
        &'a self,
        creds: &'a TenantCredentials,
        kind: DirectoryKind,
        id: &'a str,
    ) -> GraphFuture<'a, bool>;
    fn write_policy<'a>(
        &'a self,
        creds: &'a TenantCredentials,
        request: WriteRequest<'a>,
    ) -> GraphFuture<'a, Written>;
}

impl PolicyWriter for GraphClient {
    fn object_exists<'a>(
        &'a self,
        _creds: &'a TenantCredentials,
        _kind: DirectoryKind,
        _id: &'a str,
    ) -> GraphFuture<'a, bool> {
        Box::pin(async { Err(GraphError::new(ReasonCode::UnknownError, "not yet")) })
    }
    fn write_policy<'a>(
        &'a self,
        _creds: &'a TenantCredentials,
        _request: WriteRequest<'a>,
    ) -> GraphFuture<'a, Written> {
        Box::pin(async { Err(GraphError::new(ReasonCode::UnknownError, "not yet")) })
    }
}
