package transfer

import (
	"context"
	"time"

	"atende/controlplane"
)

// StoreEvents records events in the tenant registry: each is an event with From equal to To (the
// tenant's state is kept), saved with the tenant like the supervisor's own (Store.SaveTenant,
// retried when the tenant changed meanwhile). It implements EventRecorder.
type StoreEvents struct {
	// Store is the tenant registry.
	Store controlplane.Store
}

// RecordEvent appends an event with reason to the tenant's history. It returns the store's error
// after 10 conflicting attempts.
func (e StoreEvents) RecordEvent(ctx context.Context, tenantID, reason string) error {
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		var t *controlplane.Tenant
		if t, err = e.Store.Tenant(ctx, tenantID); err != nil {
			return err
		}
		ev := &controlplane.Event{TenantID: t.ID, From: t.State, To: t.State, At: time.Now().UTC(), Reason: reason}
		err = e.Store.SaveTenant(ctx, t, ev)
		if controlplane.ErrorCode(err) != controlplane.EConflict {
			return err
		}
		time.Sleep(time.Duration(attempt+1) * 20 * time.Millisecond)
	}
	return err
}
