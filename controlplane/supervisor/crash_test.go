package supervisor_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"atende/controlplane"
	"atende/controlplane/supervisor"
)

// point is one checkpoint of a tenant's life: its name and how many times it was reached before.
type point struct {
	name string
	nth  int
}

func (p point) String() string { return fmt.Sprintf("%s#%d", p.name, p.nth) }

// pointLog records the checkpoints a supervisor reaches, and crashes it at one of them.
type pointLog struct {
	mu      sync.Mutex
	counts  map[string]int
	seen    []point
	crashAt *point
}

func (l *pointLog) hook(ctx context.Context, tenantID, name string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := point{name, l.counts[name]}
	l.counts[name]++
	l.seen = append(l.seen, p)
	if l.crashAt != nil && *l.crashAt == p {
		return errors.New("injected crash")
	}
	return nil
}

// lifecycle takes one tenant through creation, use (data in its database and under its prefix)
// and deletion on a control plane whose supervisor may crash at one checkpoint; when it does, a
// fresh control plane (new supervisor, new process driver, same registry, databases, object store
// and cell directory) is started and must carry on. It returns the tenant's id and the last
// control plane.
func lifecycle(t *testing.T, st *stack, key string, log *pointLog) (string, *node) {
	t.Helper()
	n := st.start(nil, func(o *supervisor.Options) { o.Checkpoint = log.hook })
	restarted := false
	// await waits for the tenant to reach want, replacing a crashed control plane once.
	await := func(id string, want controlplane.State) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			if tn, err := st.store.Tenant(context.Background(), id); err == nil && tn.State == want {
				return
			}
			select {
			case err := <-n.done:
				n.done <- err
				if restarted || !errors.Is(err, supervisor.ErrCrashed) {
					t.Fatalf("supervisor ended: %v", err)
				}
				n.crashed(t, time.Second)
				restarted = true
				n = st.start(nil) // a new control plane on the same registry
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("tenant %s never reached %s: %+v", key, want, st.tenant(id))
			}
		}
	}
	ctx := context.Background()
	created, err := n.sup.CreateTenant(ctx, newTenant(key))
	if err != nil {
		t.Fatal(err)
	}
	id := created.Tenant.ID
	await(id, controlplane.StateLive)
	st.seed(t, id)
	if _, err := n.sup.DeleteTenant(ctx, id, true); err != nil {
		t.Fatal(err)
	}
	await(id, controlplane.StateDeleted)
	if log.crashAt != nil && !restarted { // crashed after its last write (or never)
		select {
		case err := <-n.done:
			n.done <- err
			n.crashed(t, time.Second)
			n = st.start(nil)
		case <-time.After(5 * time.Second):
			t.Fatalf("no crash at %s", log.crashAt)
		}
	}
	return id, n
}

// TestCrashAtEveryPoint crashes the supervisor at each checkpoint of a tenant's creation and
// deletion in turn: a fresh supervisor on the same registry converges (the tenant gets live,
// then deleted), nothing is left behind (a sweep finds nothing, the tenant holds nothing), and
// the tenant's events tell its history in order, each teardown action exactly once.
func TestCrashAtEveryPoint(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: about a minute (two dozen crashes and restarts)")
	}
	st := newStack(t)
	discover := &pointLog{counts: map[string]int{}}
	id, n := lifecycle(t, st, "probe", discover)
	noOrphans(t, n.sup)
	n.stop()
	evs, _ := st.store.Events(context.Background(), id)
	checkEvents(t, evs)
	// Crashing right after taking a lease is the same whichever step follows: keep one such point.
	var points []point
	for _, p := range discover.seen {
		if p.name != supervisor.CheckpointStepBegin || p.nth == 1 {
			points = append(points, p)
		}
	}
	t.Logf("%d checkpoints in a tenant's life, crashing at %d: %v", len(discover.seen), len(points), points)
	for i, p := range points {
		t.Run(p.String(), func(t *testing.T) {
			log := &pointLog{counts: map[string]int{}, crashAt: &p}
			id, n := lifecycle(t, st, fmt.Sprintf("crash%d", i), log)
			defer n.stop()
			for kind, has := range st.holdings(t, id) {
				if has {
					t.Errorf("%s left behind", kind)
				}
			}
			noOrphans(t, n.sup)
			evs, err := n.sup.TenantEvents(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			checkEvents(t, evs)
			if last := evs[len(evs)-1]; last.To != controlplane.StateDeleted {
				t.Fatalf("last event %+v", last)
			}
		})
	}
}
