package controlplane

// DataDescriber is implemented by DataRemovers that can say what they remove for a tenant, e.g.
// "database t_<tenantId>"; the supervisor names it in the tenant's teardown events.
type DataDescriber interface {
	// DescribeTenantData names the tenant's data the remover deletes.
	DescribeTenantData(t *Tenant) string
}
