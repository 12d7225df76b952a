-- The picker orders by name and then id (a total order, so pages never overlap): with the id in
-- the index, a page is read in index order instead of sorting the tenant's whole inventory
-- (PostgreSQL, 50,000 policies: the last page 21 ms -> 6 ms, the first 6 ms -> 0.3 ms in psql).
DROP INDEX policies_tenant_name;
CREATE INDEX policies_tenant_name_id ON policies (tenant_id, display_name, id);
