package supervisor

import (
	"context"
	"fmt"
	"strings"
	"time"

	"atende/controlplane"
)

var _ controlplane.TenancySetter = (*Supervisor)(nil)

// SetTenancy implements controlplane.TenancySetter. The mode is trimmed and lowercased. Like
// RotateKeys, Tenant.Generation grows by one so the reconciler restarts a live tenant's cell with
// the new mode (restartCell); a suspended tenant's cell gets it when resumed.
func (s *Supervisor) SetTenancy(ctx context.Context, idOrKey, mode string) (*controlplane.Tenant, error) {
	mode = strings.ToLower(strings.TrimSpace(mode))
	if err := controlplane.ValidateTenancy(mode); err != nil {
		return nil, err
	}
	return s.intent(ctx, idOrKey, func(t *controlplane.Tenant) (*controlplane.Event, bool, error) {
		current := t.Tenancy
		if current == "" {
			current = controlplane.TenancyStrict
		}
		if current == mode {
			return nil, false, nil
		}
		if t.State != controlplane.StateLive && t.State != controlplane.StateSuspended {
			return nil, false, controlplane.Errorf(controlplane.EConflict, "the tenancy of a %s tenant cannot be changed (it must be live or suspended)", t.State)
		}
		now := time.Now().UTC()
		t.Tenancy = mode
		t.Generation++
		t.UpdatedAt = now
		reason := fmt.Sprintf("tenancy set to %s by super-admin (was %s)", mode, current)
		return &controlplane.Event{TenantID: t.ID, From: t.State, To: t.State, At: now, Reason: reason}, true, nil
	})
}
