-- Hosts held by tenants (issue: traffic-plane isolation). A route naming a host needs its
-- tenant to hold the host, exactly or through a wildcard (`*.example.com`); assignments of
-- different tenants never overlap (checked by the API). Names are canonical: lower-case
-- IDNA ASCII, no port, no trailing dot.
CREATE TABLE domains (
    name TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants(id),
    created_at BIGINT NOT NULL
);
CREATE INDEX domains_tenant ON domains(tenant);
