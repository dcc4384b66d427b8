package supervisor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"atende/controlplane"
)

// DefaultLeaseTTL is the default lifetime of a step's lease (Options.LeaseTTL).
const DefaultLeaseTTL = 15 * time.Second

// ErrCrashed is returned by Run after Options.Checkpoint crashed the supervisor.
var ErrCrashed = errors.New("supervisor: crashed at a checkpoint")

// errLeaseLost and errLeaseExpiring end a step's context when its lease is lost or about to lapse.
var (
	errLeaseLost     = errors.New("supervisor: the tenant's lease was lost to another supervisor")
	errLeaseExpiring = errors.New("supervisor: the tenant's lease could not be renewed before it lapsed")
)

// Checkpoints: the named points of steps at which Options.Checkpoint is called. Every step begins
// with CheckpointStepBegin (its lease held, the tenant reloaded) and ends with CheckpointStepEnd
// (its writes done or failed, its lease not yet released); the others follow the action they
// name. The context passed at each point carries the step's fence (controlplane.FenceFrom).
const (
	// CheckpointStepBegin: the step's lease is held and the tenant reloaded; nothing done yet.
	CheckpointStepBegin = "step-begin"
	// CheckpointStepEnd: the step's writes are done (or it failed); its lease is still held.
	CheckpointStepEnd = "step-end"
	// CheckpointGranted: the tenant's object-store credentials are granted (cell start or resume).
	CheckpointGranted = "granted"
	// CheckpointCellStarted: the driver started the cell.
	CheckpointCellStarted = "cell-started"
	// CheckpointCellHealthy: the cell answered /healthz.
	CheckpointCellHealthy = "cell-healthy"
	// CheckpointRouted: the route table with the tenant live was published.
	CheckpointRouted = "routed"
	// CheckpointCellStopped: the cell was stopped (suspension, pending deletion).
	CheckpointCellStopped = "cell-stopped"
	// CheckpointRevoked: the tenant's object-store credentials were revoked.
	CheckpointRevoked = "revoked"
	// CheckpointTeardownPrefix + action name (see TeardownAction): that teardown action is done,
	// its event not yet saved.
	CheckpointTeardownPrefix = "teardown:"
)

// defaultOwner returns "<hostname>-<pid>-<8 random hex digits>": unique per supervisor instance.
func defaultOwner() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms.
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
}

// Owner returns the name this supervisor holds leases under (Options.Owner).
func (s *Supervisor) Owner() string { return s.owner }

// leasedStep takes the tenant's lease, reloads the tenant, runs the step it needs now (if any)
// with the lease's fence in its context, and releases the lease. It returns a conflict *Error
// without doing anything if another supervisor holds the lease.
func (s *Supervisor) leasedStep(ctx context.Context, tenantID string) error {
	lease, err := s.leases.AcquireLease(ctx, tenantID, s.owner, s.opts.LeaseTTL)
	if err != nil {
		if !lease.ExpiresAt.IsZero() {
			// Held by another supervisor, which is stepping the tenant: look again when its lease
			// lapses, or in a second (it may release it and leave the next step to us).
			s.mu.Lock()
			until := time.Now().Add(time.Second)
			if lease.ExpiresAt.Before(until) {
				until = lease.ExpiresAt
			}
			s.heldUntil[tenantID] = until
			s.mu.Unlock()
		}
		return err
	}
	stepCtx, done := s.hold(ctx, lease)
	defer func() {
		held := done()
		if s.crashed.Load() {
			return // a dead process releases nothing: the lease lapses
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := s.leases.ReleaseLease(rctx, held); err != nil {
			s.log.Warn("release lease", attrTenantID, tenantID, attrErr, err.Error())
		}
	}()
	// The state may have moved while the lease was free (another supervisor's step, an intent):
	// decide on what is stored now.
	t, err := s.store.Tenant(stepCtx, tenantID)
	if err != nil {
		return err
	}
	step := s.stepFor(stepCtx, t)
	if step == nil {
		return nil
	}
	stepCtx = controlplane.WithFence(stepCtx, lease.Fence)
	if err := s.checkpoint(stepCtx, t, CheckpointStepBegin); err != nil {
		return err
	}
	s.log.Debug("tenant step", attrTenantID, t.ID, attrKey, t.Key, "state", string(t.State), "fence", lease.Fence)
	err = step(stepCtx, t)
	if err != nil {
		if cause := context.Cause(stepCtx); cause != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w: %w", cause, err)
		}
	}
	if s.crashed.Load() {
		return err
	}
	return errors.Join(err, s.checkpoint(stepCtx, t, CheckpointStepEnd))
}

// hold renews lease every third of its lifetime until done is called, and returns a context
// derived from ctx that is cancelled (with errLeaseLost or errLeaseExpiring as its cause) as soon
// as a renewal is refused, or a quarter of the lifetime before the lease lapses if renewals keep
// failing or hang: a timer, not the renewing goroutine, enforces that deadline, so a step never
// outlives its lease. done stops the renewals and returns the lease as last renewed.
func (s *Supervisor) hold(ctx context.Context, lease controlplane.Lease) (context.Context, func() controlplane.Lease) {
	stepCtx, cancel := context.WithCancelCause(ctx)
	ttl := s.opts.LeaseTTL
	margin := ttl / 4
	deadline := time.AfterFunc(time.Until(lease.ExpiresAt)-margin, func() { cancel(errLeaseExpiring) })
	stop := make(chan struct{})
	finished := make(chan controlplane.Lease, 1)
	go func() {
		cur := lease
		defer func() { finished <- cur }()
		for {
			select {
			case <-stop:
				return
			case <-stepCtx.Done():
				return
			case <-time.After(ttl / 3):
			}
			next, err := s.leases.RenewLease(stepCtx, cur, ttl)
			switch {
			case err == nil:
				if deadline.Stop() { // not fired yet: move it
					deadline.Reset(time.Until(next.ExpiresAt) - margin)
				}
				cur = next
			case controlplane.ErrorCode(err) == controlplane.EConflict:
				s.log.Warn("lease lost", attrTenantID, cur.TenantID, "fence", cur.Fence, attrErr, err.Error())
				cancel(errLeaseLost)
				return
			case stepCtx.Err() == nil:
				s.log.Warn("renew lease", attrTenantID, cur.TenantID, attrErr, err.Error())
			}
		}
	}()
	return stepCtx, func() controlplane.Lease {
		close(stop)
		l := <-finished
		deadline.Stop()
		cancel(nil)
		return l
	}
}

// checkpoint calls Options.Checkpoint at point of t's step. If it fails, the supervisor is dead
// from then on (see Options.Checkpoint) and the error says where it crashed.
func (s *Supervisor) checkpoint(ctx context.Context, t *controlplane.Tenant, point string) error {
	if s.crashed.Load() {
		return ErrCrashed
	}
	if s.opts.Checkpoint == nil {
		return nil
	}
	if err := s.opts.Checkpoint(ctx, t.ID, point); err != nil {
		s.crashed.Store(true)
		return fmt.Errorf("%w %q of tenant %s: %w", ErrCrashed, point, t.ID, err)
	}
	return nil
}

// save is Store.SaveTenant, refused once the supervisor crashed.
func (s *Supervisor) save(ctx context.Context, t *controlplane.Tenant, ev *controlplane.Event) error {
	if s.crashed.Load() {
		return ErrCrashed
	}
	return s.store.SaveTenant(ctx, t, ev)
}
