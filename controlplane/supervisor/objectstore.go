package supervisor

import (
	"context"
	"fmt"
	"slices"

	"atende/cell"
	"atende/controlplane"
)

// ObjectStoreIAM gives every tenant's cell object-store credentials of its own, valid only for
// reading and writing the objects under the tenant's prefix (controlplane.S3Prefix) of the shared
// bucket. The supervisor grants a tenant's credentials before it starts the tenant's cell and
// revokes them once the cell is stopped for good (suspension, deletion, failed start); at its
// first pass, before any step, it syncs the whole set with the tenants whose cells run or are
// about to (objectStoreHolders). Every method is idempotent. versity.TenantAccess implements it
// for the embedded gateway; an implementation for another S3 server (e.g. MinIO users and
// policies) can replace it.
type ObjectStoreIAM interface {
	// GrantTenant ensures the tenant's credentials exist and are allowed on its prefix, and
	// returns them.
	GrantTenant(ctx context.Context, tenantID string) (accessKey, secretKey string, err error)
	// RevokeTenant withdraws the tenant's permissions, then deletes its credentials.
	RevokeTenant(ctx context.Context, tenantID string) error
	// SyncTenants makes the granted set exactly tenantIDs, granting missing ones and revoking
	// every other tenant's, which repairs a crash between the steps of a grant or revocation.
	SyncTenants(ctx context.Context, tenantIDs []string) error
}

// objectStoreHolders are the states in which a tenant's cell runs or is about to be started, and
// so holds object-store credentials.
var objectStoreHolders = []controlplane.State{
	controlplane.StateCreationRequested, controlplane.StateCreating, controlplane.StateLive,
	controlplane.StateSuspendRequested, controlplane.StateResumeRequested,
}

// cellConfig returns t's cell configuration (Platform.CellConfig) adapted to its tier
// (tierCellConfig). With an ObjectStoreIAM it first grants a shared-tier tenant's object-store
// credentials and hands those to the cell instead of the platform's.
func (s *Supervisor) cellConfig(ctx context.Context, t *controlplane.Tenant) (cell.Config, error) {
	cfg, err := s.tierCellConfig(ctx, t, s.opts.Platform.CellConfig(t))
	if err != nil {
		return cfg, err
	}
	if t.Dedicated || s.opts.ObjectStoreIAM == nil { // a dedicated tenant's credentials are on its own bucket
		return cfg, nil
	}
	access, secret, err := s.opts.ObjectStoreIAM.GrantTenant(ctx, t.ID)
	if err != nil {
		return cfg, fmt.Errorf("grant object-store credentials: %w", err)
	}
	cfg.S3AccessKey, cfg.S3SecretKey = access, secret
	return cfg, nil
}

// revokeObjectStore revokes t's object-store credentials: a dedicated tenant's on its own bucket
// (TenantBuckets), a shared-tier tenant's through the ObjectStoreIAM, if one is configured.
func (s *Supervisor) revokeObjectStore(ctx context.Context, t *controlplane.Tenant) error {
	if t.Dedicated && s.opts.TenantBuckets != nil {
		if err := s.opts.TenantBuckets.RevokeTenantBucket(ctx, t.ID); err != nil {
			return fmt.Errorf("revoke bucket credentials: %w", err)
		}
		return nil
	}
	if s.opts.ObjectStoreIAM == nil {
		return nil
	}
	if err := s.opts.ObjectStoreIAM.RevokeTenant(ctx, t.ID); err != nil {
		return fmt.Errorf("revoke object-store credentials: %w", err)
	}
	s.log.Info("object-store credentials revoked", attrTenantID, t.ID, attrKey, t.Key)
	return nil
}

// objectStoreSynced syncs the object-store credentials with the holders among tenants (every
// tenant that is not deleted) unless that already succeeded, and reports whether they are
// synced. Until they are, pass starts no step: a step's grant must not race the sync's
// revocations.
func (s *Supervisor) objectStoreSynced(ctx context.Context, tenants []*controlplane.Tenant) bool {
	if s.opts.ObjectStoreIAM == nil || s.iamSynced {
		return true
	}
	ids := []string{}
	for _, t := range tenants {
		if slices.Contains(objectStoreHolders, t.State) && !t.Dedicated { // dedicated: own bucket
			ids = append(ids, t.ID)
		}
	}
	if err := s.opts.ObjectStoreIAM.SyncTenants(ctx, ids); err != nil {
		if ctx.Err() == nil {
			s.log.Error("sync object-store credentials; no tenant step until it succeeds", attrErr, err.Error())
		}
		return false
	}
	s.iamSynced = true
	s.log.Info("object-store credentials synced", "tenants", len(ids))
	return true
}
