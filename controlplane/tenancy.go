package controlplane

import (
	"context"

	"atende/cell"
)

// Tenancy modes of a tenant's cell (Tenant.Tenancy, passed to the cell as cell.Config.Tenancy).
const (
	// TenancyStrict (the default) makes the cell refuse every request without the tenant
	// context: another Host (421), a token without the tenant's tenantId (403).
	TenancyStrict = cell.TenancyStrict
	// TenancyCompat makes the cell also serve requests without the tenant context while the
	// clients of a tenant migrated from the single-tenant app switch over (see cell.TenancyCompat;
	// issue 5). A token of another tenant or audience is still refused.
	TenancyCompat = cell.TenancyCompat
)

// ValidateTenancy checks that mode is TenancyStrict or TenancyCompat and returns an invalid
// *Error naming both otherwise.
func ValidateTenancy(mode string) error {
	if mode != TenancyStrict && mode != TenancyCompat {
		return Errorf(EInvalid, "tenancy %q is unknown (use %s or %s)", mode, TenancyStrict, TenancyCompat)
	}
	return nil
}

// TenancySetter is implemented by tenant services that can change a tenant's tenancy mode.
type TenancySetter interface {
	// SetTenancy records mode (TenancyStrict or TenancyCompat) as the tenant's tenancy with an
	// event and has its cell restarted with it (a live tenant's cell at once, a suspended one's
	// when resumed), like a key rotation. Setting the current mode changes nothing. Errors:
	// invalid (unknown mode), not_found, conflict (the tenant is neither live nor suspended).
	SetTenancy(ctx context.Context, idOrKey, mode string) (*Tenant, error)
}
