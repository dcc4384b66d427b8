package controlplane

import (
	"context"
	"time"
)

// Lease is a supervisor's exclusive and expiring right to act on one tenant (run one step of
// its lifecycle). Leases of a tenant form a numbered chain of epochs 1, 2, 3…: an epoch is claimed
// by inserting a document whose id is unique to it, so exactly one claimant wins each epoch, on
// MongoDB and on FerretDB alike (DESIGN.md §5), and an epoch is claimed only once the previous one
// was released or has expired. Whoever holds the latest epoch that is neither released nor
// expired holds the tenant.
//
// Safety against a holder that stalls past its expiry (a paused process, a partitioned network)
// comes from the fence: Fence grows with every new holder, the supervisor passes it to the cell
// driver with every call of a step (WithFence), and drivers refuse to act on a cell last touched
// with a higher fence. The clocks of control planes sharing a registry are assumed to differ by
// far less than a lease's lifetime.
type Lease struct {
	// TenantID is the tenant the lease is on.
	TenantID string `json:"tenantId"`
	// Owner names the holder (a supervisor instance), e.g. "host-1234-k3x9".
	Owner string `json:"owner"`
	// Fence is the epoch claimed when the lease was acquired: strictly greater than the fence of
	// every earlier holder of the tenant. It stays the same when the lease is renewed.
	Fence int64 `json:"fence"`
	// Epoch is the latest epoch claimed by this holder: Fence at first, one more at each renewal.
	Epoch int64 `json:"epoch"`
	// ExpiresAt is when the lease lapses unless renewed (UTC, the holder's clock).
	ExpiresAt time.Time `json:"expiresAt"`
}

// LeaseStore keeps the leases of tenants (see Lease). Implementations must arbitrate every claim
// of an epoch with an insert against a unique id.
type LeaseStore interface {
	// AcquireLease claims the next epoch of tenantID's lease for owner, valid for ttl, if the
	// latest epoch is released or has expired (or there is none). It returns a conflict *Error
	// naming the holder if the lease is held, together with the holder's lease (Owner, Epoch,
	// ExpiresAt), or a conflict *Error and a zero Lease if another claimant won the same epoch.
	AcquireLease(ctx context.Context, tenantID, owner string, ttl time.Duration) (Lease, error)
	// RenewLease extends l by claiming the epoch after l.Epoch for the same owner, valid for ttl
	// from now, and returns the renewed lease (same Fence, next Epoch). It returns a conflict
	// *Error if that epoch was claimed by someone else: l was lost (it had expired) and the holder
	// must stop acting on the tenant at once.
	RenewLease(ctx context.Context, l Lease, ttl time.Duration) (Lease, error)
	// ReleaseLease marks l's epoch released, so the next AcquireLease need not wait for its
	// expiry. Releasing a lease that was lost or already released changes nothing and succeeds.
	ReleaseLease(ctx context.Context, l Lease) error
}

type fenceKey struct{}

// WithFence returns a copy of ctx carrying fence, the Lease.Fence of the supervisor step that
// makes the driver calls done with it (see FenceFrom).
func WithFence(ctx context.Context, fence int64) context.Context {
	return context.WithValue(ctx, fenceKey{}, fence)
}

// FenceFrom returns the fence WithFence put in ctx, and whether there is one. Drivers record it
// on what they start and refuse (conflict) to start, stop or remove a tenant's cell last touched
// with a higher fence: a newer holder of the tenant's lease owns it.
func FenceFrom(ctx context.Context) (int64, bool) {
	f, ok := ctx.Value(fenceKey{}).(int64)
	return f, ok && f > 0
}
