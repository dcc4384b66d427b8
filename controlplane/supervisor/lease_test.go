package supervisor_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"atende/controlplane"
	"atende/controlplane/supervisor"
)

// stepLog records, across supervisors, the steps of every tenant: which supervisor stepped it
// with which fence, and whether two steps of one tenant ever overlapped.
type stepLog struct {
	mu       sync.Mutex
	inStep   map[string]string // tenant id -> owner of the step in flight
	fences   map[string][]int64
	owners   map[string]int // steps per owner
	overlaps []string
}

func newStepLog() *stepLog {
	return &stepLog{inStep: map[string]string{}, fences: map[string][]int64{}, owners: map[string]int{}}
}

// hook returns the Checkpoint of the supervisor named owner. It holds every step a little, so
// overlapping steps would be caught.
func (l *stepLog) hook(owner string) func(ctx context.Context, tenantID, point string) error {
	return func(ctx context.Context, tenantID, point string) error {
		switch point {
		case supervisor.CheckpointStepBegin:
			fence, _ := controlplane.FenceFrom(ctx)
			l.mu.Lock()
			if other, busy := l.inStep[tenantID]; busy {
				l.overlaps = append(l.overlaps, fmt.Sprintf("%s stepped %s while %s did", owner, tenantID, other))
			}
			l.inStep[tenantID] = owner
			l.fences[tenantID] = append(l.fences[tenantID], fence)
			l.owners[owner]++
			l.mu.Unlock()
			time.Sleep(15 * time.Millisecond)
		case supervisor.CheckpointStepEnd:
			l.mu.Lock()
			delete(l.inStep, tenantID)
			l.mu.Unlock()
		}
		return nil
	}
}

// TestTwoSupervisorsNeverStepOneTenantAtOnce runs two control planes on one registry and one cell
// driver (as two control planes on one Docker engine) through the whole lifecycle of several
// tenants: no tenant is ever stepped by both at once, every step carries a fence higher than the
// tenant's previous one, and everything converges.
func TestTwoSupervisorsNeverStepOneTenantAtOnce(t *testing.T) {
	st := newStack(t)
	log := newStepLog()
	a := st.start(nil, func(o *supervisor.Options) {
		o.Owner, o.Checkpoint, o.Tick, o.LeaseTTL = "a", log.hook("a"), 30*time.Millisecond, 3*time.Second
	})
	b := st.start(a.driver, func(o *supervisor.Options) {
		o.Owner, o.Checkpoint, o.Tick, o.LeaseTTL = "b", log.hook("b"), 30*time.Millisecond, 3*time.Second
	})
	ctx := context.Background()
	sups := []*supervisor.Supervisor{a.sup, b.sup}
	var ids []string
	for i := range 6 {
		created, err := sups[i%2].CreateTenant(ctx, newTenant(fmt.Sprintf("duo%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, created.Tenant.ID)
	}
	for _, id := range ids {
		st.waitFor(t, id, controlplane.StateLive, 20*time.Second)
		st.seed(t, id)
	}
	for i, id := range ids {
		if _, err := sups[(i+1)%2].SuspendTenant(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	for i, id := range ids {
		st.waitFor(t, id, controlplane.StateSuspended, 20*time.Second)
		if _, err := sups[i%2].ResumeTenant(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	for i, id := range ids {
		st.waitFor(t, id, controlplane.StateLive, 20*time.Second)
		if _, err := sups[(i+1)%2].DeleteTenant(ctx, id, true); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range ids {
		st.waitFor(t, id, controlplane.StateDeleted, 20*time.Second)
		evs, err := st.store.Events(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		checkEvents(t, evs)
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.overlaps) > 0 {
		t.Fatalf("overlapping steps: %v", log.overlaps)
	}
	for id, fences := range log.fences {
		for i := 1; i < len(fences); i++ {
			if fences[i] <= fences[i-1] {
				t.Fatalf("tenant %s: fences %v do not increase", id, fences)
			}
		}
	}
	t.Logf("steps per supervisor: %v", log.owners)
	if log.owners["a"] == 0 || log.owners["b"] == 0 {
		t.Fatalf("one supervisor did every step: %v", log.owners)
	}
	noOrphans(t, b.sup)
}

// TestAKilledSupervisorsTenantIsTakenOverAfterTheLeaseExpires: supervisor A stalls in the middle
// of a tenant's creation, renewing its lease; supervisor B does not touch the tenant meanwhile.
// A is then killed (its context cancelled without releasing anything): B takes the tenant over
// once A's lease has lapsed, with a higher fence, and finishes the creation.
func TestAKilledSupervisorsTenantIsTakenOverAfterTheLeaseExpires(t *testing.T) {
	st := newStack(t)
	const ttl = time.Second
	stalled := make(chan int64, 1)
	a := st.start(nil, func(o *supervisor.Options) {
		o.Owner, o.LeaseTTL = "a", ttl
		o.Checkpoint = func(ctx context.Context, tenantID, point string) error {
			if point != supervisor.CheckpointCellStarted {
				return nil
			}
			fence, _ := controlplane.FenceFrom(ctx)
			stalled <- fence
			<-ctx.Done() // hangs until the process is killed
			return ctx.Err()
		}
	})
	ctx := context.Background()
	created, err := a.sup.CreateTenant(ctx, newTenant("stall"))
	if err != nil {
		t.Fatal(err)
	}
	id := created.Tenant.ID
	var fenceA int64
	select {
	case fenceA = <-stalled:
	case <-time.After(10 * time.Second):
		t.Fatal("A never reached the cell start")
	}
	var mu sync.Mutex
	var takenOver time.Time
	var fenceB int64
	b := st.start(a.driver, func(o *supervisor.Options) {
		o.Owner, o.LeaseTTL = "b", ttl
		o.Checkpoint = func(ctx context.Context, tenantID, point string) error {
			if tenantID == id && point == supervisor.CheckpointStepBegin {
				mu.Lock()
				if takenOver.IsZero() {
					takenOver = time.Now()
					fenceB, _ = controlplane.FenceFrom(ctx)
				}
				mu.Unlock()
			}
			return nil
		}
	})
	time.Sleep(3 * ttl) // A is alive (stalled) and renews: B must keep off
	mu.Lock()
	early := !takenOver.IsZero()
	mu.Unlock()
	if early {
		t.Fatal("B stepped a tenant whose lease A held and renewed")
	}
	if tn := st.tenant(id); tn.State != controlplane.StateCreating {
		t.Fatalf("state %s while A stalls", tn.State)
	}
	killed := time.Now()
	a.cancel() // the kill: the checkpoint returns, A crashes without releasing its lease
	a.crashed(t, 10*time.Second)
	tn := st.waitFor(t, id, controlplane.StateLive, 20*time.Second)
	mu.Lock()
	after := takenOver.Sub(killed)
	mu.Unlock()
	t.Logf("B took over %s after the kill (lease %s); fences A %d, B %d", after, ttl, fenceA, fenceB)
	// A renewed at most a third of the lease before the kill: at least two thirds remained.
	if after < ttl/2 {
		t.Fatalf("B took over %s after the kill, before A's lease could lapse", after)
	}
	if fenceB <= fenceA {
		t.Fatalf("B's fence %d is not above A's %d", fenceB, fenceA)
	}
	cs, err := b.sup.CellStatus(ctx, id)
	if err != nil || !cs.Healthy || cs.Fence < fenceB || tn.Cell.PID != cs.PID {
		t.Fatalf("cell %+v %v, tenant cell %+v", cs, err, tn.Cell)
	}
	evs, _ := b.sup.TenantEvents(ctx, id)
	checkEvents(t, evs)
}
