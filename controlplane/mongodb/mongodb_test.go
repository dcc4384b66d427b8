package mongodb_test

import (
	"context"
	"reflect"
	"sync"
	"testing"
	"time"

	"atende/cell"
	"atende/controlplane"
	"atende/controlplane/ferret"
	"atende/controlplane/mongodb"
)

// openStore starts an embedded FerretDB in a temporary directory and opens a registry store on a
// database of its own.
func openStore(t *testing.T) *mongodb.Store {
	t.Helper()
	srv, err := ferret.Start(t.TempDir(), "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := mongodb.Open(ctx, srv.URI(), "registry_test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func newTenant(key string) (*controlplane.Tenant, controlplane.Event) {
	now := time.Now().UTC().Truncate(time.Millisecond)
	t := &controlplane.Tenant{
		ID: controlplane.NewTenantID(), Key: key, Name: "Tenant " + key, State: controlplane.StateCreationRequested,
		AllowedOrigins: []string{"https://" + key + ".example"}, Plan: controlplane.PlanFree,
		Limits: controlplane.Plans[controlplane.PlanFree], CreatedAt: now, UpdatedAt: now,
		URL:        "http://" + key + ".localhost:8080",
		Generation: 3, Cell: controlplane.Cell{Generation: 2},
		Secrets: controlplane.Secrets{SigningKeySeed: make([]byte, 32), SigningKeyID: "k1",
			PreviousKeys:   []cell.VerificationKey{{KID: "k0", PublicKey: make([]byte, 32), RetiredAt: now}},
			BootstrapUsers: []cell.BootstrapUser{{Email: "a@" + key + ".test", Name: "Admin", Roles: []string{"tenant-admin", "agent"}, PasswordHash: "$2a$10$x"}}},
	}
	return t, controlplane.Event{TenantID: t.ID, To: t.State, At: now, Reason: "registered"}
}

func TestStore(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()

	t.Run("create and read back", func(t *testing.T) {
		tn, ev := newTenant("readback")
		if err := s.CreateTenant(ctx, tn, ev); err != nil {
			t.Fatal(err)
		}
		for name, get := range map[string]func() (*controlplane.Tenant, error){
			"by id":  func() (*controlplane.Tenant, error) { return s.Tenant(ctx, tn.ID) },
			"by key": func() (*controlplane.Tenant, error) { return s.TenantByKey(ctx, "readback") },
		} {
			got, err := get()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if got.ID != tn.ID || got.Key != tn.Key || got.Version != 1 || got.Secrets.SigningKeyID != "k1" ||
				len(got.Secrets.BootstrapUsers) != 1 || got.Secrets.BootstrapUsers[0].Roles[0] != "tenant-admin" ||
				!got.CreatedAt.Equal(tn.CreatedAt) || got.AllowedOrigins[0] != tn.AllowedOrigins[0] ||
				got.Generation != 3 || got.Cell.Generation != 2 || !reflect.DeepEqual(got.Secrets.PreviousKeys, tn.Secrets.PreviousKeys) {
				t.Fatalf("%s: got %+v, want %+v", name, got, tn)
			}
		}
	})

	t.Run("reopening on existing indexes", func(t *testing.T) {
		for range 2 {
			if _, err := mongodb.New(ctx, s.Client(), "registry_test"); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("not found", func(t *testing.T) {
		for _, err := range []error{
			func() error { _, err := s.Tenant(ctx, "nope"); return err }(),
			func() error { _, err := s.TenantByKey(ctx, "nope"); return err }(),
		} {
			if controlplane.ErrorCode(err) != controlplane.ENotFound {
				t.Fatalf("got %v, want not_found", err)
			}
		}
	})

	t.Run("concurrent creates of one key have exactly one winner", func(t *testing.T) {
		for round := range 5 {
			key := "race" + string(rune('a'+round))
			const n = 20
			var wg sync.WaitGroup
			errs := make([]error, n)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					tn, ev := newTenant(key)
					errs[i] = s.CreateTenant(ctx, tn, ev)
				}()
			}
			wg.Wait()
			wins := 0
			for _, err := range errs {
				switch controlplane.ErrorCode(err) {
				case "":
					wins++
				case controlplane.EConflict:
				default:
					t.Fatalf("unexpected error: %v", err)
				}
			}
			if wins != 1 {
				t.Fatalf("round %d: %d winners, want 1", round, wins)
			}
		}
	})

	t.Run("transitions are saved with events and stale saves conflict", func(t *testing.T) {
		tn, ev := newTenant("lifecycle")
		if err := s.CreateTenant(ctx, tn, ev); err != nil {
			t.Fatal(err)
		}
		stale := *tn
		for _, to := range []controlplane.State{controlplane.StateCreating, controlplane.StateLive} {
			ev, err := tn.Transition(to, "step", time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if err := s.SaveTenant(ctx, tn, ev); err != nil {
				t.Fatal(err)
			}
		}
		if tn.Version != 3 {
			t.Fatalf("version %d, want 3", tn.Version)
		}
		stale.Name = "stale"
		if err := s.SaveTenant(ctx, &stale, nil); controlplane.ErrorCode(err) != controlplane.EConflict {
			t.Fatalf("stale save: got %v, want conflict", err)
		}
		got, _ := s.Tenant(ctx, tn.ID)
		if got.State != controlplane.StateLive || got.Name == "stale" {
			t.Fatalf("stored %+v", got)
		}
		evs, err := s.Events(ctx, tn.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := []controlplane.State{controlplane.StateCreationRequested, controlplane.StateCreating, controlplane.StateLive}
		if len(evs) != len(want) {
			t.Fatalf("events %+v", evs)
		}
		for i, e := range evs {
			if e.To != want[i] || e.Seq != int64(i+1) {
				t.Fatalf("event %d: %+v", i, e)
			}
		}
		if _, err := s.Tenant(ctx, "missing"); controlplane.ErrorCode(err) != controlplane.ENotFound {
			t.Fatal(err)
		}
		missing, _ := newTenant("ghost")
		if err := s.SaveTenant(ctx, missing, nil); controlplane.ErrorCode(err) != controlplane.ENotFound {
			t.Fatalf("save of unknown tenant: got %v, want not_found", err)
		}
	})

	t.Run("a deleted key can be registered again with a new id", func(t *testing.T) {
		old, ev := newTenant("reuse")
		if err := s.CreateTenant(ctx, old, ev); err != nil {
			t.Fatal(err)
		}
		for _, to := range []controlplane.State{controlplane.StateDeletionPending, controlplane.StateDeleting, controlplane.StateDeleted} {
			ev, _ := old.Transition(to, "delete", time.Now())
			if err := s.SaveTenant(ctx, old, ev); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.TenantByKey(ctx, "reuse"); controlplane.ErrorCode(err) != controlplane.ENotFound {
			t.Fatalf("deleted tenant still found by key: %v", err)
		}
		fresh, ev := newTenant("reuse")
		if err := s.CreateTenant(ctx, fresh, ev); err != nil {
			t.Fatalf("re-registering a deleted key: %v", err)
		}
		got, err := s.TenantByKey(ctx, "reuse")
		if err != nil || got.ID != fresh.ID || got.ID == old.ID {
			t.Fatalf("got %+v, %v", got, err)
		}
		dup, ev := newTenant("reuse")
		if err := s.CreateTenant(ctx, dup, ev); controlplane.ErrorCode(err) != controlplane.EConflict {
			t.Fatalf("duplicate of a live key: got %v, want conflict", err)
		}
		all, err := s.Tenants(ctx, controlplane.TenantFilter{IncludeDeleted: true})
		if err != nil {
			t.Fatal(err)
		}
		live, _ := s.Tenants(ctx, controlplane.TenantFilter{})
		deleted, _ := s.Tenants(ctx, controlplane.TenantFilter{States: []controlplane.State{controlplane.StateDeleted}})
		if len(all) != len(live)+len(deleted) || len(deleted) != 1 || deleted[0].ID != old.ID {
			t.Fatalf("all %d live %d deleted %d", len(all), len(live), len(deleted))
		}
		for i := 1; i < len(all); i++ {
			if all[i].CreatedAt.Before(all[i-1].CreatedAt) {
				t.Fatal("tenants not oldest first")
			}
		}
	})
}
