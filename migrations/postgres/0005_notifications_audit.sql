-- Persistent notifications for users, and the audit log.
CREATE TABLE notifications (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    level TEXT NOT NULL CHECK (level IN ('info', 'success', 'warning', 'error')),
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    link TEXT,
    read_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX notifications_user_unread ON notifications (user_id, read_at, created_at);

CREATE TABLE audit_log (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- NULL for events outside any tenant (e.g. sign-in).
    tenant_id BIGINT REFERENCES tenants (id) ON DELETE CASCADE,
    actor_user_id BIGINT REFERENCES users (id) ON DELETE SET NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    -- Small sanitized JSON object.
    details TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL
);
CREATE INDEX audit_log_tenant_created ON audit_log (tenant_id, created_at);
