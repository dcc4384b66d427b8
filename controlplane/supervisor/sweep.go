package supervisor

import (
	"context"
	"slices"
	"time"

	"atende/controlplane"
)

var _ controlplane.Sweeper = (*Supervisor)(nil)

// resourceListers returns the listers a sweep asks: the driver, the data removers, the
// object-store credential manager and the dedicated buckets' manager when they implement
// controlplane.ResourceLister, then Options.Resources.
func (s *Supervisor) resourceListers() []controlplane.ResourceLister {
	var out []controlplane.ResourceLister
	candidates := []any{s.driver}
	for _, r := range s.opts.DataRemovers {
		candidates = append(candidates, r)
	}
	if s.opts.ObjectStoreIAM != nil {
		candidates = append(candidates, s.opts.ObjectStoreIAM)
	}
	if s.opts.TenantBuckets != nil {
		candidates = append(candidates, s.opts.TenantBuckets) // dedicated buckets (and accounts)
	}
	for _, c := range candidates {
		if l, ok := c.(controlplane.ResourceLister); ok {
			out = append(out, l)
		}
	}
	return append(out, s.opts.Resources...)
}

// Sweep implements controlplane.Sweeper: it lists every tenant resource its listers know (see
// resourceListers), then reads the whole registry, tombstones included, and reports the
// resources of unknown or deleted tenants (controlplane.FindOrphans). It deletes nothing. A
// tenant still being torn down is not deleted yet, so its resources are not reported.
func (s *Supervisor) Sweep(ctx context.Context) (*controlplane.SweepReport, error) {
	report := &controlplane.SweepReport{At: time.Now().UTC(), Kinds: []string{}}
	var found []controlplane.Resource
	for _, l := range s.resourceListers() {
		rs, err := l.TenantResources(ctx)
		if err != nil {
			return nil, err
		}
		found = append(found, rs...)
		for _, k := range l.ResourceKinds() {
			if !slices.Contains(report.Kinds, k) {
				report.Kinds = append(report.Kinds, k)
			}
		}
	}
	slices.Sort(report.Kinds)
	// Resources first, registry second: a tenant registered meanwhile is then known.
	tenants, err := s.store.Tenants(ctx, controlplane.TenantFilter{IncludeDeleted: true})
	if err != nil {
		return nil, err
	}
	report.Orphans = controlplane.FindOrphans(found, tenants)
	return report, nil
}
