-- The picker orders by name and then id (a total order, so pages never overlap): with the id in
-- the index, a page is read in index order instead of sorting the tenant's whole inventory
-- (PostgreSQL in psql, 50,000 policies, the page cut before the set lookup: the last page
-- 10-13 ms -> 5-7 ms, the first 0.3 ms).
DROP INDEX policies_tenant_name;
CREATE INDEX policies_tenant_name_id ON policies (tenant_id, display_name, id);
