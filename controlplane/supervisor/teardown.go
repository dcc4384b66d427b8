package supervisor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"atende/controlplane"
)

// Teardown action names (TeardownAction.Name), in the order they run; each data remover adds
// "data-<i>" between TeardownCellRemove and TeardownCredentials.
const (
	// TeardownRoute publishes the route table without the tenant: its host gets "not found".
	TeardownRoute = "route"
	// TeardownCellStop stops the cell (SIGTERM or the driver's equivalent): it closes its
	// WebSockets and drains its requests.
	TeardownCellStop = "cell-stop"
	// TeardownCellRemove removes the process's files or the container and network.
	TeardownCellRemove = "cell-remove"
	// TeardownCredentials revokes the tenant's object-store credentials (with ObjectStoreIAM).
	TeardownCredentials = "credentials"
)

// TeardownAction is one action of a deleted tenant's teardown. Every action is idempotent: what
// is already gone ("not found", "already stopped") counts as done.
type TeardownAction struct {
	// Name identifies the action, e.g. TeardownRoute or "data-0".
	Name string
	// Done describes the outcome in the action's event, e.g. "database t_<id> dropped".
	Done string
	// Run performs it.
	Run func(ctx context.Context, t *controlplane.Tenant) error
}

// TeardownActions returns the actions that tear down t, in order: route, cell stop (sockets),
// cell removal (process or container), each data remover in the order of Options.DataRemovers
// (database, then object prefix, as cmd/controlplane wires them), and the object-store
// credentials. The tombstone (state deleted) follows the last one.
//
// The tier adds its own actions (stackTeardown): a dedicated tenant's database server and volume
// right after the cell stop, its bucket after the data removers; a shared-tier tenant's database
// user after the cell removal (with Options.DatabaseUsers). The tier never changes, so the list
// of a tenant is the same at every step and TeardownDone keeps indexing it.
func (s *Supervisor) TeardownActions(t *controlplane.Tenant) []TeardownAction {
	stack := s.stackTeardown(t)
	actions := []TeardownAction{
		{TeardownRoute, "route removed", func(ctx context.Context, t *controlplane.Tenant) error {
			return s.publishRoutes(ctx, nil, time.Time{}) // the registry says deleting: not routed
		}},
		{TeardownCellStop, "cell stopped, its connections closed", func(ctx context.Context, t *controlplane.Tenant) error {
			return s.driver.Stop(ctx, t.ID)
		}},
	}
	actions = append(actions, stack[TeardownCellStop]...)
	actions = append(actions, TeardownAction{TeardownCellRemove, fmt.Sprintf("cell removed (%s driver)", s.driver.Name()), func(ctx context.Context, t *controlplane.Tenant) error {
		return s.driver.Remove(ctx, t.ID)
	}})
	actions = append(actions, stack[TeardownCellRemove]...)
	for i, r := range s.opts.DataRemovers {
		what := fmt.Sprintf("data of remover %d", i)
		if d, ok := r.(controlplane.DataDescriber); ok {
			what = d.DescribeTenantData(t)
		}
		actions = append(actions, TeardownAction{fmt.Sprintf("data-%d", i), what + " removed", func(ctx context.Context, t *controlplane.Tenant) error {
			return r.RemoveTenantData(ctx, t)
		}})
	}
	actions = append(actions, stack[teardownData]...)
	if s.opts.ObjectStoreIAM != nil || (t.Dedicated && s.opts.TenantBuckets != nil) {
		actions = append(actions, TeardownAction{TeardownCredentials, "object-store credentials revoked", s.revokeObjectStore})
	}
	return actions
}

// awaitDeletion stops the cell of a deletion-pending tenant (revoking its object-store
// credentials) and, once DeleteAt has passed, moves it to deleting.
func (s *Supervisor) awaitDeletion(ctx context.Context, t *controlplane.Tenant) error {
	if st, err := s.driver.Status(ctx, t.ID); err == nil && st.State != controlplane.CellAbsent && st.State != controlplane.CellStopped {
		if err := s.driver.Stop(ctx, t.ID); err != nil {
			return err
		}
		if err := s.checkpoint(ctx, t, CheckpointCellStopped); err != nil {
			return err
		}
		if err := s.revokeObjectStore(ctx, t); err != nil {
			return err
		}
		if err := s.checkpoint(ctx, t, CheckpointRevoked); err != nil {
			return err
		}
	}
	if t.DeleteAt != nil && time.Now().Before(*t.DeleteAt) {
		return nil
	}
	t.TeardownDone = 0
	return s.transition(ctx, t, controlplane.StateDeleting, "grace period over; tearing down")
}

// teardown performs the next teardown action of a deleting tenant and records it with an event
// (deleting → deleting) and TeardownDone, or, once all are done, saves the tombstone: state
// deleted, the key free, the tenant's secrets and cell facts erased. A failing action moves the
// tenant to deletion-failed with the reason; it is retried from that action after
// Options.RetryFailedDeletionAfter.
func (s *Supervisor) teardown(ctx context.Context, t *controlplane.Tenant) error {
	actions := s.TeardownActions(t)
	if t.TeardownDone >= len(actions) {
		t.Secrets = controlplane.Secrets{}
		t.Cell.PID, t.Cell.Address, t.Cell.ContainerID, t.Cell.StartedAt = 0, "", "", nil
		t.DeleteAt, t.StateBeforeDeletion = nil, ""
		return s.transition(ctx, t, controlplane.StateDeleted, "torn down; the key is free")
	}
	a := actions[t.TeardownDone]
	err := a.Run(ctx, t)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		reason := fmt.Sprintf("teardown %d/%d (%s) failed: %v", t.TeardownDone+1, len(actions), a.Name, err)
		return errors.Join(err, s.transition(ctx, t, controlplane.StateDeletionFailed, reason))
	}
	if err := s.checkpoint(ctx, t, CheckpointTeardownPrefix+a.Name); err != nil {
		return err
	}
	t.TeardownDone++
	t.UpdatedAt = time.Now().UTC()
	reason := fmt.Sprintf("teardown %d/%d: %s", t.TeardownDone, len(actions), a.Done)
	if err := s.save(ctx, t, &controlplane.Event{TenantID: t.ID, From: t.State, To: t.State, At: t.UpdatedAt, Reason: reason}); err != nil {
		return err
	}
	s.log.Info("tenant teardown", attrTenantID, t.ID, attrKey, t.Key, "action", a.Name, "done", t.TeardownDone, "of", len(actions))
	return nil
}
