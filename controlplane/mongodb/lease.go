package mongodb

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"atende/controlplane"
)

// Leases (controlplane.Lease) in the "leases" collection, designed for FerretDB v1: every read is
// a find by _id (the only filter FerretDB pushes down) and every claim an insert against the
// unique _id (the only "exactly one" FerretDB guarantees).
//
//   - Epoch n of tenant T is the document "lease:<T>:<n>" {tenantId, epoch, owner, acquiredAt,
//     expiresAt, releasedAt?}. Epochs are claimed in order: n+1 only by someone who read n as the
//     latest and saw it released or expired (or, for a renewal, held it), so the chain has no
//     gaps and whoever inserts n+1 first wins it. Epochs are never deleted or reused.
//   - "lease:<T>:head" {epoch} records a recent epoch so the search for the latest starts near
//     it; it is written after each claim without any condition and may lag or even go back
//     (two claimants writing it at once), which only costs a few more reads: the search walks
//     forward from it by _id until an epoch is missing.

// leaseDoc is the stored shape of one lease epoch.
type leaseDoc struct {
	ID         string     `bson:"_id"`
	TenantID   string     `bson:"tenantId"`
	Epoch      int64      `bson:"epoch"`
	Owner      string     `bson:"owner"`
	AcquiredAt time.Time  `bson:"acquiredAt"`
	ExpiresAt  time.Time  `bson:"expiresAt"`
	ReleasedAt *time.Time `bson:"releasedAt,omitempty"`
}

// leaseHeadDoc is the stored hint of a tenant's latest epoch.
type leaseHeadDoc struct {
	ID       string `bson:"_id"`
	TenantID string `bson:"tenantId"`
	Epoch    int64  `bson:"epoch"`
}

// LeaseID returns the _id of epoch epoch of tenantID's lease: "lease:<tenantId>:<epoch>".
func LeaseID(tenantID string, epoch int64) string {
	return "lease:" + tenantID + ":" + strconv.FormatInt(epoch, 10)
}

func leaseHeadID(tenantID string) string { return "lease:" + tenantID + ":head" }

var _ controlplane.LeaseStore = (*Store)(nil)

// AcquireLease implements controlplane.LeaseStore.
func (s *Store) AcquireLease(ctx context.Context, tenantID, owner string, ttl time.Duration) (controlplane.Lease, error) {
	if tenantID == "" || owner == "" || ttl <= 0 {
		return controlplane.Lease{}, controlplane.Errorf(controlplane.EInvalid, "a lease needs a tenant id, an owner and a positive lifetime")
	}
	latest, epoch, err := s.latestLease(ctx, tenantID)
	if err != nil {
		return controlplane.Lease{}, err
	}
	now := time.Now().UTC()
	if latest != nil && latest.ReleasedAt == nil && now.Before(latest.ExpiresAt) {
		holder := controlplane.Lease{TenantID: tenantID, Owner: latest.Owner, Fence: latest.Epoch, Epoch: latest.Epoch, ExpiresAt: latest.ExpiresAt}
		return holder, controlplane.Errorf(controlplane.EConflict, "tenant %s is leased by %s until %s (epoch %d)",
			tenantID, latest.Owner, latest.ExpiresAt.Format(time.RFC3339Nano), latest.Epoch)
	}
	return s.claim(ctx, tenantID, owner, epoch+1, epoch+1, now, ttl)
}

// RenewLease implements controlplane.LeaseStore.
func (s *Store) RenewLease(ctx context.Context, l controlplane.Lease, ttl time.Duration) (controlplane.Lease, error) {
	if ttl <= 0 || l.Epoch <= 0 {
		return controlplane.Lease{}, controlplane.Errorf(controlplane.EInvalid, "a lease renewal needs a held lease and a positive lifetime")
	}
	return s.claim(ctx, l.TenantID, l.Owner, l.Fence, l.Epoch+1, time.Now().UTC(), ttl)
}

// claim inserts epoch of tenantID's lease for owner, valid for ttl from now, and returns the lease
// with fence. A duplicate _id means another claimant has the epoch: a conflict.
func (s *Store) claim(ctx context.Context, tenantID, owner string, fence, epoch int64, now time.Time, ttl time.Duration) (controlplane.Lease, error) {
	d := leaseDoc{ID: LeaseID(tenantID, epoch), TenantID: tenantID, Epoch: epoch, Owner: owner, AcquiredAt: now, ExpiresAt: now.Add(ttl)}
	if _, err := s.leases.InsertOne(ctx, d); err != nil {
		if isDuplicate(err) {
			return controlplane.Lease{}, controlplane.Errorf(controlplane.EConflict, "epoch %d of the lease on tenant %s was claimed by someone else", epoch, tenantID)
		}
		return controlplane.Lease{}, fmt.Errorf("mongodb: claim lease: %w", err)
	}
	s.hintLease(tenantID, epoch)
	// The head is only a hint: a failure to write it costs later searches a few reads.
	_, _ = s.leases.ReplaceOne(context.WithoutCancel(ctx), bson.D{{Key: "_id", Value: leaseHeadID(tenantID)}},
		leaseHeadDoc{ID: leaseHeadID(tenantID), TenantID: tenantID, Epoch: epoch}, options.Replace().SetUpsert(true))
	return controlplane.Lease{TenantID: tenantID, Owner: owner, Fence: fence, Epoch: epoch, ExpiresAt: d.ExpiresAt}, nil
}

// ReleaseLease implements controlplane.LeaseStore.
func (s *Store) ReleaseLease(ctx context.Context, l controlplane.Lease) error {
	d, err := s.leaseAt(ctx, l.TenantID, l.Epoch)
	if err != nil || d == nil || d.Owner != l.Owner || d.ReleasedAt != nil {
		return err
	}
	now := time.Now().UTC()
	d.ReleasedAt = &now
	if _, err := s.leases.ReplaceOne(ctx, bson.D{{Key: "_id", Value: d.ID}}, d); err != nil {
		return fmt.Errorf("mongodb: release lease: %w", err)
	}
	return nil
}

// Lease returns the latest epoch of tenantID's lease (released, expired or held) as a Lease, and
// whether there is one. It is meant for inspection and tests.
func (s *Store) Lease(ctx context.Context, tenantID string) (controlplane.Lease, bool, error) {
	d, _, err := s.latestLease(ctx, tenantID)
	if err != nil || d == nil {
		return controlplane.Lease{}, false, err
	}
	return controlplane.Lease{TenantID: tenantID, Owner: d.Owner, Fence: d.Epoch, Epoch: d.Epoch, ExpiresAt: d.ExpiresAt}, true, nil
}

// latestLease returns the latest epoch document of tenantID's lease (nil if none) and its epoch
// number (0 if none), walking forward from the best hint.
func (s *Store) latestLease(ctx context.Context, tenantID string) (*leaseDoc, int64, error) {
	var epoch int64
	if v, ok := s.leaseHints.Load(tenantID); ok {
		epoch = v.(int64)
	}
	var head leaseHeadDoc
	err := s.leases.FindOne(ctx, bson.D{{Key: "_id", Value: leaseHeadID(tenantID)}}).Decode(&head)
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return nil, 0, fmt.Errorf("mongodb: read lease head: %w", err)
	}
	epoch = max(epoch, head.Epoch)
	var latest *leaseDoc
	if epoch > 0 {
		if latest, err = s.leaseAt(ctx, tenantID, epoch); err != nil {
			return nil, 0, err
		}
		if latest == nil { // a hint beyond the chain (documents removed by hand): start over
			epoch = 0
		}
	}
	for {
		next, err := s.leaseAt(ctx, tenantID, epoch+1)
		if err != nil {
			return nil, 0, err
		}
		if next == nil {
			break
		}
		latest, epoch = next, epoch+1
	}
	s.hintLease(tenantID, epoch)
	return latest, epoch, nil
}

// leaseAt returns epoch of tenantID's lease, or nil if it was never claimed.
func (s *Store) leaseAt(ctx context.Context, tenantID string, epoch int64) (*leaseDoc, error) {
	var d leaseDoc
	err := s.leases.FindOne(ctx, bson.D{{Key: "_id", Value: LeaseID(tenantID, epoch)}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mongodb: read lease: %w", err)
	}
	d.AcquiredAt, d.ExpiresAt = d.AcquiredAt.UTC(), d.ExpiresAt.UTC()
	return &d, nil
}

// hintLease remembers epoch as seen for tenantID if it is the highest seen so far.
func (s *Store) hintLease(tenantID string, epoch int64) {
	for {
		v, loaded := s.leaseHints.LoadOrStore(tenantID, epoch)
		if !loaded || v.(int64) >= epoch || s.leaseHints.CompareAndSwap(tenantID, v, epoch) {
			return
		}
	}
}

// TenantResources implements controlplane.ResourceLister: the databases of the server named
// "t_<tenantId>" (controlplane.DatabaseName) with a tenant id's shape.
func (d TenantDatabases) TenantResources(ctx context.Context) ([]controlplane.Resource, error) {
	names, err := d.Client.ListDatabaseNames(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("mongodb: list databases: %w", err)
	}
	out := []controlplane.Resource{}
	for _, n := range names {
		if id, ok := strings.CutPrefix(n, controlplane.DatabaseName("")); ok && controlplane.IsTenantID(id) {
			out = append(out, controlplane.Resource{Kind: controlplane.ResourceDatabase, Name: n, TenantID: id})
		}
	}
	return out, nil
}

// DescribeTenantData names the database RemoveTenantData drops, for teardown events.
func (d TenantDatabases) DescribeTenantData(t *controlplane.Tenant) string {
	return "database " + controlplane.DatabaseName(t.ID)
}

// ResourceKinds implements controlplane.ResourceLister.
func (d TenantDatabases) ResourceKinds() []string { return []string{controlplane.ResourceDatabase} }
