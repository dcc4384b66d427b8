package versity

import (
	"context"
	"strings"

	"atende/controlplane"
)

var _ controlplane.ResourceLister = (*TenantAccess)(nil)

// TenantResources implements controlplane.ResourceLister: one controlplane.ResourceCredentials
// per tenant account (access key TenantAccessKeyPrefix + tenant id) on the gateway, named by its
// access key.
func (a *TenantAccess) TenantResources(ctx context.Context) ([]controlplane.Resource, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	accounts, err := a.accounts()
	if err != nil {
		return nil, err
	}
	out := []controlplane.Resource{}
	for access := range accounts {
		if id, ok := strings.CutPrefix(access, TenantAccessKeyPrefix); ok && id != "" {
			out = append(out, controlplane.Resource{Kind: controlplane.ResourceCredentials, Name: access, TenantID: id})
		}
	}
	return out, nil
}

// ResourceKinds implements controlplane.ResourceLister.
func (a *TenantAccess) ResourceKinds() []string { return []string{controlplane.ResourceCredentials} }
