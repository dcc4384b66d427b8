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

	t.Run("a crash between the event and the tenant write loses nothing and shows nothing false", func(t *testing.T) {
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
		// The restarted supervisor's step saves the same version: its event takes the slot.
		e, _ = got.Transition(controlplane.StateCreating, "second try", time.Now())
		if err := s.SaveTenant(ctx, got, e); err != nil {
			t.Fatal(err)
		}
		evs, _ = s.Events(ctx, tn.ID)
		if !slices.Equal(states(t, evs), []controlplane.State{controlplane.StateCreationRequested, controlplane.StateCreating}) || evs[1].Reason != "second try" || evs[1].Seq != 2 {
			t.Fatalf("events %+v", evs)
		}
	})

	t.Run("a left-over event under a version later saved without an event stays hidden", func(t *testing.T) {
		tn, ev := newTenant("addr")
		if err := s.CreateTenant(ctx, tn, ev); err != nil {
			t.Fatal(err)
		}
		mongodb.SetBeforeSave(s, func(string) error { return crash })
		next := *tn
		e, _ := next.Transition(controlplane.StateCreating, "never saved", time.Now())
		_ = s.SaveTenant(ctx, &next, e)
		mongodb.SetBeforeSave(s, nil)
		tn.Cell.Address = "127.0.0.1:1" // a save without event (the cell moved) reaches version 2
		if err := s.SaveTenant(ctx, tn, nil); err != nil {
			t.Fatal(err)
		}
		e, _ = tn.Transition(controlplane.StateCreating, "saved", time.Now())
		if err := s.SaveTenant(ctx, tn, e); err != nil {
			t.Fatal(err)
		}
		evs, _ := s.Events(ctx, tn.ID)
		if len(evs) != 2 || evs[0].Seq != 1 || evs[1].Seq != 3 || evs[1].Reason != "saved" {
			t.Fatalf("events %+v", evs)
		}
	})

	// Concurrent saves of one version by one store (the API's intent and a supervisor step of one
	// control plane): exactly one wins and only its event shows. (Across control planes the
	// compare-and-set is atomic on MongoDB only; on FerretDB the tenant's lease serializes the
	// supervisors' steps.)
	t.Run("of two writers saving one version, only the winner's event shows", func(t *testing.T) {
		tn, ev := newTenant("duel")
		if err := s.CreateTenant(ctx, tn, ev); err != nil {
			t.Fatal(err)
		}
		for round := range 10 {
			cur, _ := s.Tenant(ctx, tn.ID)
			var wg sync.WaitGroup
			reasons := []string{"a", "b", "c"}
			errs := make([]error, len(reasons))
			for i := range reasons {
				st := s
				wg.Add(1)
				go func() {
					defer wg.Done()
					mine := *cur
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
