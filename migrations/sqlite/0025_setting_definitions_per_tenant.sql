-- Settings catalog setting definitions belong to the tenant whose capture stored them: each
-- tenant's Graph answers for its own catalog (custom and ingested definitions, a catalog version
-- rolled out to one tenant first), so one tenant's capture must never rename another tenant's
-- settings. Definitions are now keyed by (tenant, id).
ALTER TABLE setting_definitions RENAME TO setting_definitions_shared;
CREATE TABLE setting_definitions (
    tenant_id BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    -- The definition as the tenant's Graph returned it (canonical JSON).
    definition TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
-- Which tenant stored a definition before was not recorded: each one goes to every tenant one
-- of whose versions uses its id (a `settingDefinitionId` anywhere in the payload, as the
-- viewer reads them), so every stored version still reads with the names it read with before.
-- A payload that is not JSON uses none.
INSERT INTO setting_definitions (tenant_id, id, display_name, definition, updated_at)
SELECT used.tenant_id, d.id, d.display_name, d.definition, d.updated_at
FROM (
    SELECT DISTINCT s.tenant_id, j.value AS id
    FROM policy_snapshots s,
        json_tree(CASE WHEN json_valid(s.payload) THEN s.payload ELSE '{}' END) j
    WHERE s.payload LIKE '%"settingDefinitionId"%'
        AND j.key = 'settingDefinitionId' AND j.type = 'text'
) used
JOIN setting_definitions_shared d ON d.id = used.id;
DROP TABLE setting_definitions_shared;
