package mongodb_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"atende/controlplane"
	"atende/controlplane/mongodb"
)

// states returns the To states of evs and checks that their Seqs strictly increase.
func states(t *testing.T, evs []controlplane.Event) []controlplane.State {
	t.Helper()
	var out []controlplane.State
	for i, e := range evs {
		if i > 0 && e.Seq <= evs[i-1].Seq {
			t.Fatalf("events out of order: %+v", evs)
		}
		out = append(out, e.To)
	}
	return out
}

func TestEventsSurviveCrashes(t *testing.T) {
	stores := openStores(t, 2)
	s := stores[0]
	ctx := context.Background()
	crash := errors.New("crash")

	t.Run("a crash after the version claim is rolled forward by the next save, nothing shown before", func(t *testing.T) {
		tn, ev := newTenant("crashy")
		if err := s.CreateTenant(ctx, tn, ev); err != nil {
			t.Fatal(err)
		}
		mongodb.SetBeforeSave(s, func(string) error { return crash })
		next := *tn
		e, _ := next.Transition(controlplane.StateCreating, "first try", time.Now())
		if err := s.SaveTenant(ctx, &next, e); !errors.Is(err, crash) {
			t.Fatalf("save: %v", err)
		}
		mongodb.SetBeforeSave(s, nil)
		got, _ := s.Tenant(ctx, tn.ID)
		evs, err := s.Events(ctx, tn.ID)
		if err != nil || got.Version != 1 || got.State != controlplane.StateCreationRequested ||
			!slices.Equal(states(t, evs), []controlplane.State{controlplane.StateCreationRequested}) {
			t.Fatalf("after the crash: tenant %+v events %+v %v", got, evs, err)
		}
		// The restarted supervisor's step saves the same version, on the other control plane:
		// version 2 was decided by the claim, so it is applied and the late save loses.
		e, _ = got.Transition(controlplane.StateCreating, "second try", time.Now())
		if err := stores[1].SaveTenant(ctx, got, e); controlplane.ErrorCode(err) != controlplane.EConflict {
			t.Fatalf("save of a claimed version: %v, want conflict", err)
		}
		got, _ = s.Tenant(ctx, tn.ID)
		evs, _ = s.Events(ctx, tn.ID)
		if got.Version != 2 || got.State != controlplane.StateCreating ||
			!slices.Equal(states(t, evs), []controlplane.State{controlplane.StateCreationRequested, controlplane.StateCreating}) || evs[1].Reason != "first try" || evs[1].Seq != 2 {
			t.Fatalf("after the roll-forward: tenant v%d %s, events %+v", got.Version, got.State, evs)
		}
		// And the chain goes on from there.
		e, _ = got.Transition(controlplane.StateLive, "next step", time.Now())
		if err := s.SaveTenant(ctx, got, e); err != nil {
			t.Fatal(err)
		}
		if evs, _ = s.Events(ctx, tn.ID); len(evs) != 3 || evs[2].Seq != 3 || evs[2].Reason != "next step" {
			t.Fatalf("events %+v", evs)
		}
	})

	t.Run("a save without an event continues the chain after a rolled-forward claim", func(t *testing.T) {
		tn, ev := newTenant("addr")
		if err := s.CreateTenant(ctx, tn, ev); err != nil {
			t.Fatal(err)
		}
		mongodb.SetBeforeSave(s, func(string) error { return crash })
		next := *tn
		e, _ := next.Transition(controlplane.StateCreating, "claimed", time.Now())
		_ = s.SaveTenant(ctx, &next, e)
		mongodb.SetBeforeSave(s, nil)
		tn.Cell.Address = "127.0.0.1:1"
		if err := s.SaveTenant(ctx, tn, nil); controlplane.ErrorCode(err) != controlplane.EConflict {
			t.Fatalf("save of a claimed version: %v, want conflict", err)
		}
		tn, _ = s.Tenant(ctx, tn.ID)
		tn.Cell.Address = "127.0.0.1:1" // a save without event (the cell moved) reaches version 3
		if err := s.SaveTenant(ctx, tn, nil); err != nil {
			t.Fatal(err)
		}
		e, _ = tn.Transition(controlplane.StateLive, "saved", time.Now())
		if err := s.SaveTenant(ctx, tn, e); err != nil {
			t.Fatal(err)
		}
		evs, _ := s.Events(ctx, tn.ID)
		if len(evs) != 3 || evs[1].Seq != 2 || evs[1].Reason != "claimed" || evs[2].Seq != 4 || evs[2].Reason != "saved" {
			t.Fatalf("events %+v", evs)
		}
	})

	// Concurrent saves of one version through two stores (two control planes: the API's intent on
	// one and a supervisor step on the other): exactly one wins, on FerretDB too, and only its
	// state and event show.
	t.Run("of writers on two control planes saving one version, only the winner's save shows", func(t *testing.T) {
		tn, ev := newTenant("duel")
		if err := s.CreateTenant(ctx, tn, ev); err != nil {
			t.Fatal(err)
		}
		for round := range 10 {
			cur, _ := s.Tenant(ctx, tn.ID)
			var wg sync.WaitGroup
			reasons := []string{"a", "b", "c", "d", "e", "f"}
			errs := make([]error, len(reasons))
			for i := range reasons {
				st := stores[i%len(stores)]
				wg.Add(1)
				go func() {
					defer wg.Done()
					mine := *cur
					mine.Name = "written by " + reasons[i]
					e := &controlplane.Event{TenantID: mine.ID, From: mine.State, To: mine.State, At: time.Now(), Reason: reasons[i]}
					errs[i] = st.SaveTenant(ctx, &mine, e)
				}()
			}
			wg.Wait()
			winner := -1
			for i, err := range errs {
				if err == nil {
					if winner >= 0 {
						t.Fatalf("round %d: two winners", round)
					}
					winner = i
				} else if controlplane.ErrorCode(err) != controlplane.EConflict {
					t.Fatalf("round %d: %v", round, err)
				}
			}
			evs, _ := s.Events(ctx, tn.ID)
			last := evs[len(evs)-1]
			if winner < 0 || last.Seq != cur.Version+1 || last.Reason != reasons[winner] || len(evs) != round+2 {
				t.Fatalf("round %d: winner %d, events %+v", round, winner, evs)
			}
			if got, _ := stores[1].Tenant(ctx, tn.ID); got.Version != cur.Version+1 || got.Name != "written by "+reasons[winner] {
				t.Fatalf("round %d: tenant v%d %q, want v%d written by the winner %s", round, got.Version, got.Name, cur.Version+1, reasons[winner])
			}
		}
	})

	t.Run("events stored before chaining are kept", func(t *testing.T) {
		tn, ev := newTenant("legacy")
		if err := s.CreateTenant(ctx, tn, ev); err != nil {
			t.Fatal(err)
		}
		if err := mongodb.DropEvents(ctx, s, tn.ID); err != nil {
			t.Fatal(err)
		}
		if err := mongodb.InsertLegacyEvent(ctx, s, tn.ID, 1, "", string(controlplane.StateCreationRequested)); err != nil {
			t.Fatal(err)
		}
		if err := mongodb.UnchainTenant(ctx, s, tn.ID); err != nil {
			t.Fatal(err)
		}
		if evs, _ := s.Events(ctx, tn.ID); len(evs) != 1 || evs[0].Seq != 1 {
			t.Fatalf("legacy events %+v", evs)
		}
		e, _ := tn.Transition(controlplane.StateCreating, "chained", time.Now())
		if err := s.SaveTenant(ctx, tn, e); err != nil {
			t.Fatal(err)
		}
		evs, _ := s.Events(ctx, tn.ID)
		if !slices.Equal(states(t, evs), []controlplane.State{controlplane.StateCreationRequested, controlplane.StateCreating}) {
			t.Fatalf("events %+v", evs)
		}
	})

	t.Run("the registration event of a tenant that could not be inserted is not kept", func(t *testing.T) {
		tn, ev := newTenant("dupkey")
		if err := s.CreateTenant(ctx, tn, ev); err != nil {
			t.Fatal(err)
		}
		dup, ev := newTenant("dupkey")
		if err := s.CreateTenant(ctx, dup, ev); controlplane.ErrorCode(err) != controlplane.EConflict {
			t.Fatal(err)
		}
		if evs, err := s.Events(ctx, dup.ID); err != nil || len(evs) != 0 {
			t.Fatalf("%+v %v", evs, err)
		}
	})
}
