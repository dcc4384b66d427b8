package webhook

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// leaseDoc is one epoch of the delivery lease (webhook_state, `_id` = leaseID(epoch)). Only the
// Dispatcher that inserted it ever updates it, so FerretDB's read-modify-write updates are safe.
type leaseDoc struct {
	ID        string    `bson:"_id"`
	TenantID  string    `bson:"tenantId"`
	Epoch     int64     `bson:"epoch"`
	Holder    string    `bson:"holder"`
	ExpiresAt time.Time `bson:"expiresAt"`
	Released  bool      `bson:"released,omitempty"`
}

// leaseHeadID names the hint document holding the newest epoch known to its writer.
const leaseHeadID = "lease-head"

func leaseID(epoch int64) string { return fmt.Sprintf("lease:%012d", epoch) }

// errLeaseLost means a newer epoch exists: another Dispatcher took over.
var errLeaseLost = errors.New("webhook: lease taken over by another dispatcher")

// lease is an epoch this Dispatcher holds, valid (locally, on the monotonic clock) until
// validUntil.
type lease struct {
	epoch      int64
	mu         sync.Mutex
	validUntil time.Time
	lost       bool
}

func (l *lease) valid() bool { return l.validFor(0) }

// validFor reports whether l stays valid for at least d more: an attempt starts only if the lease
// outlives its timeout, so no attempt is still running when another holder may start.
func (l *lease) validFor(d time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.lost && time.Now().Add(d).Before(l.validUntil)
}

func (l *lease) extend(until time.Time) {
	l.mu.Lock()
	l.validUntil = until
	l.mu.Unlock()
}

func (l *lease) markLost() {
	l.mu.Lock()
	l.lost = true
	l.mu.Unlock()
}

// margin is the part of the TTL kept as safety: the holder stops delivering margin before its
// recorded expiry, and a contender takes over only margin after it (clock skew, slow writes).
func (d *Dispatcher) margin() time.Duration { return d.opts.LeaseTTL / 4 }

// latestEpoch returns the newest lease epoch (0 if none) and its document: the head hint, then
// point reads forward past epochs inserted after it.
func (d *Dispatcher) latestEpoch(ctx context.Context) (int64, leaseDoc, error) {
	var hint struct {
		Epoch int64 `bson:"epoch"`
	}
	if err := d.get(ctx, d.state, leaseHeadID, &hint); err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return 0, leaseDoc{}, err
	}
	e := hint.Epoch
	for {
		ok, err := d.exists(ctx, d.state, leaseID(e+1))
		if err != nil {
			return 0, leaseDoc{}, err
		}
		if !ok {
			break
		}
		e++
	}
	var doc leaseDoc
	if e > 0 {
		if err := d.get(ctx, d.state, leaseID(e), &doc); err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
			return 0, leaseDoc{}, err
		}
	}
	return e, doc, nil
}

// acquire tries to take the lease. It returns the lease and when delivering may start (after the
// previous holder's recorded expiry), or nil and how long to wait before trying again.
func (d *Dispatcher) acquire(ctx context.Context) (l *lease, activeAt time.Time, wait time.Duration, err error) {
	ttl, margin := d.opts.LeaseTTL, d.margin()
	e, cur, err := d.latestEpoch(ctx)
	if err != nil {
		return nil, time.Time{}, ttl / 3, fmt.Errorf("webhook: lease: %w", err)
	}
	now := d.now()
	if e > 0 && cur.Holder == d.opts.Holder && !cur.Released {
		// This Dispatcher's own epoch, from a hold that ended early (e.g. a database error):
		// renewing it checks that nobody took over.
		l := &lease{epoch: e}
		if err := d.renew(ctx, l); errors.Is(err, errLeaseLost) {
			return nil, time.Time{}, ttl / 3, nil
		} else if err != nil {
			return nil, time.Time{}, ttl / 3, err
		}
		return l, time.Time{}, 0, nil
	}
	if e > 0 && !cur.Released && now.Before(cur.ExpiresAt.Add(margin)) {
		return nil, time.Time{}, min(max(cur.ExpiresAt.Add(margin).Sub(now), ttl/20), ttl), nil
	}
	start := time.Now()
	_, err = d.state.InsertOne(ctx, leaseDoc{ID: leaseID(e + 1), TenantID: d.tenantID, Epoch: e + 1,
		Holder: d.opts.Holder, ExpiresAt: now.Add(ttl)})
	if err != nil {
		if isDuplicate(err) { // another contender won epoch e+1
			return nil, time.Time{}, ttl / 3, nil
		}
		return nil, time.Time{}, ttl / 3, fmt.Errorf("webhook: lease: %w", err)
	}
	l = &lease{epoch: e + 1}
	l.extend(start.Add(ttl - margin))
	if err := d.upsertByID(ctx, d.state, leaseHeadID, bson.D{{Key: "epoch", Value: e + 1}}); err != nil {
		d.log.Warn("webhook lease head not recorded", logEpoch, e+1, logError, err)
	}
	if e > 1 { // keep the two newest epochs: a former holder checks for the one after its own
		if _, err := d.state.DeleteOne(ctx, bson.D{{Key: "_id", Value: leaseID(e - 1)}}); err != nil {
			d.log.Warn("webhook old lease epoch not deleted", logEpoch, e-1, logError, err)
		}
	}
	// The previous holder may have renewed between our read and our insert (it notices epoch e+1
	// at its next renewal at the latest): wait out what it recorded.
	if e > 0 {
		var prev leaseDoc
		if err := d.get(ctx, d.state, leaseID(e), &prev); err == nil && !prev.Released {
			activeAt = prev.ExpiresAt.Add(margin)
		}
	}
	d.log.Info("webhook lease acquired", logEpoch, e+1, logHolder, d.opts.Holder)
	return l, activeAt, 0, nil
}

// renew extends l by the TTL: it checks that no newer epoch exists, records the new expiry in
// l's epoch document, and checks again; only then does l's local validity grow.
func (d *Dispatcher) renew(ctx context.Context, l *lease) error {
	taken := func() error {
		ok, err := d.exists(ctx, d.state, leaseID(l.epoch+1))
		switch {
		case err != nil:
			return fmt.Errorf("webhook: lease renew: %w", err)
		case ok:
			l.markLost()
			return errLeaseLost
		}
		return nil
	}
	if err := taken(); err != nil {
		return err
	}
	start := time.Now()
	ok, err := d.setByID(ctx, d.state, leaseID(l.epoch), bson.D{{Key: "$set", Value: bson.D{
		{Key: "expiresAt", Value: d.now().Add(d.opts.LeaseTTL)}}}})
	if err != nil {
		return fmt.Errorf("webhook: lease renew: %w", err)
	}
	if !ok { // deleted: at least two newer epochs exist
		l.markLost()
		return errLeaseLost
	}
	if err := taken(); err != nil {
		return err
	}
	l.extend(start.Add(d.opts.LeaseTTL - d.margin()))
	return nil
}

// keepLease renews l every third of the TTL until ctx ends, the lease is lost, or its validity
// runs out (renewals kept failing).
func (d *Dispatcher) keepLease(ctx context.Context, l *lease) {
	t := time.NewTicker(d.opts.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := d.renew(ctx, l)
		switch {
		case errors.Is(err, errLeaseLost):
			d.log.Warn("webhook lease lost", logEpoch, l.epoch, logHolder, d.opts.Holder)
			return
		case err != nil && ctx.Err() == nil:
			d.log.Warn("webhook lease not renewed", logEpoch, l.epoch, logError, err)
		}
		if !l.valid() {
			return
		}
	}
}

// release gives l up, so another replica can take over at once instead of after the TTL.
func (d *Dispatcher) release(ctx context.Context, l *lease) {
	l.markLost()
	if _, err := d.setByID(ctx, d.state, leaseID(l.epoch), bson.D{{Key: "$set", Value: bson.D{
		{Key: "released", Value: true}, {Key: "expiresAt", Value: d.now()}}}}); err != nil {
		d.log.Warn("webhook lease not released", logEpoch, l.epoch, logError, err)
	}
}
