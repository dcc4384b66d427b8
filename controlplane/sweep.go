package controlplane

import (
	"cmp"
	"context"
	"slices"
	"time"
)

// Kinds of tenant resources, as reported by ResourceListers and in a SweepReport.
const (
	// ResourceDatabase is a tenant's MongoDB database "t_<tenantId>".
	ResourceDatabase = "database"
	// ResourceObjectPrefix is a tenant's object prefix "t/<tenantId>/" holding at least one object.
	ResourceObjectPrefix = "object-prefix"
	// ResourceCredentials are a tenant's own object-store credentials.
	ResourceCredentials = "credentials"
	// ResourceProcessCell is a process-driver cell: its directory (logs) or a running process.
	ResourceProcessCell = "process-cell"
	// ResourceContainer is a docker-driver cell container labelled atende.managed.
	ResourceContainer = "container"
	// ResourceNetwork is a docker-driver cell network labelled atende.managed.
	ResourceNetwork = "network"
)

// Resource is one thing Atende created for a tenant outside the registry.
type Resource struct {
	// Kind is one of the Resource* constants.
	Kind string `json:"kind"`
	// Name identifies it within its kind, e.g. "t_<tenantId>", "t/<tenantId>/",
	// "atende-cell-<tenantId>" or a cell directory's path.
	Name string `json:"name"`
	// TenantID is the tenant it belongs to, taken from its name or its labels.
	TenantID string `json:"tenantId"`
}

// ResourceLister lists the tenant resources of one or more kinds that exist now. Cell drivers,
// data removers and object-store credential managers implement it to take part in a sweep.
type ResourceLister interface {
	// ResourceKinds returns the kinds of resources the lister lists (Resource* constants).
	ResourceKinds() []string
	// TenantResources returns every resource of the lister's kinds that belongs to a tenant,
	// whether or not the registry knows the tenant.
	TenantResources(ctx context.Context) ([]Resource, error)
}

// Reasons an orphan is reported.
const (
	// OrphanUnknownTenant: no tenant of the registry, deleted or not, has the resource's id.
	OrphanUnknownTenant = "unknown-tenant"
	// OrphanDeletedTenant: the resource belongs to a deleted tenant (a tombstone).
	OrphanDeletedTenant = "deleted-tenant"
)

// Orphan is a resource that no tenant needs any more.
type Orphan struct {
	Resource
	// Reason is OrphanUnknownTenant or OrphanDeletedTenant.
	Reason string `json:"reason"`
	// TenantKey is the key the deleted tenant had; empty for an unknown tenant.
	TenantKey string `json:"tenantKey,omitempty"`
}

// SweepReport is the answer of a sweep: the orphaned resources found, never deleted.
type SweepReport struct {
	// At is when the resources were listed (UTC).
	At time.Time `json:"at"`
	// Kinds lists the resource kinds that were looked at (the listers' kinds), sorted.
	Kinds []string `json:"kinds"`
	// Orphans are sorted by kind, then name.
	Orphans []Orphan `json:"orphans"`
}

// Sweeper lists the resources managed by Atende that the registry does not know, or that belong
// to deleted tenants. It never deletes anything.
type Sweeper interface {
	// Sweep lists the orphans.
	Sweep(ctx context.Context) (*SweepReport, error)
}

// FindOrphans returns the resources of found that belong to no tenant of tenants (which must hold
// every tenant of the registry, deleted ones included) or to a deleted one, sorted by kind and
// name. Resources must be listed before the tenants are read: a tenant is registered before any
// of its resources is created, so one being created meanwhile is then known.
func FindOrphans(found []Resource, tenants []*Tenant) []Orphan {
	byID := make(map[string]*Tenant, len(tenants))
	for _, t := range tenants {
		byID[t.ID] = t
	}
	orphans := []Orphan{}
	for _, r := range found {
		switch t := byID[r.TenantID]; {
		case t == nil:
			orphans = append(orphans, Orphan{Resource: r, Reason: OrphanUnknownTenant})
		case t.State == StateDeleted:
			orphans = append(orphans, Orphan{Resource: r, Reason: OrphanDeletedTenant, TenantKey: t.Key})
		}
	}
	slices.SortFunc(orphans, func(a, b Orphan) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name))
	})
	return orphans
}

// IsTenantID reports whether s has the shape of a tenant id made by NewTenantID (26 characters
// of [a-z2-7]), so a sweep does not take a foreign database or directory for a tenant's.
func IsTenantID(s string) bool {
	if len(s) != 26 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z') && !(c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}
