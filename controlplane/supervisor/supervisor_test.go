package supervisor_test

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"atende/controlplane"
	"atende/controlplane/ferret"
	"atende/controlplane/mongodb"
	"atende/controlplane/process"
	"atende/controlplane/process/processtest"
	"atende/controlplane/supervisor"
	"atende/traefik"
)

// fakeBin is the process driver's fake cell (../process/testdata/fakecell), compiled by TestMain.
var fakeBin string

func TestMain(m *testing.M) {
	bin, cleanup, err := processtest.BuildFakeCell()
	if err != nil {
		panic(err)
	}
	fakeBin = bin
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// routeLog records every route table the supervisor publishes.
type routeLog struct {
	mu     sync.Mutex
	tables [][]traefik.Route
}

func (r *routeLog) publish(routes []traefik.Route) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tables = append(r.tables, routes)
	return nil
}

func (r *routeLog) last() []traefik.Route {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.tables) == 0 {
		return nil
	}
	return r.tables[len(r.tables)-1]
}

func (r *routeLog) route(key string) (traefik.Route, bool) {
	for _, rt := range r.last() {
		if rt.Key == key {
			return rt, true
		}
	}
	return traefik.Route{}, false
}

// removed records the tenants whose data was removed.
type removed struct {
	mu  sync.Mutex
	ids []string
}

func (r *removed) RemoveTenantData(ctx context.Context, t *controlplane.Tenant) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ids = append(r.ids, t.ID)
	return nil
}

type fixture struct {
	store   *mongodb.Store
	driver  *process.Driver
	sup     *supervisor.Supervisor
	routes  *routeLog
	removed *removed
	stop    func()
}

// start runs a supervisor with a process driver on store until the returned fixture is stopped;
// configure, if given, changes the options first.
func start(t *testing.T, store *mongodb.Store, env []string, healthTimeout time.Duration, configure ...func(*supervisor.Options)) *fixture {
	t.Helper()
	f := &fixture{store: store, routes: &routeLog{}, removed: &removed{}}
	var err error
	var sup *supervisor.Supervisor
	f.driver, err = process.New(process.Options{Binary: fakeBin, Dir: t.TempDir(), Env: env,
		OnAddressChange: func(id, addr string) { sup.CellAddressChanged(id, addr) }})
	if err != nil {
		t.Fatal(err)
	}
	opts := supervisor.Options{
		Store: store, Driver: f.driver, Platform: supervisor.Platform{Domain: "localhost", PublicPort: 8080},
		DataRemovers: []controlplane.DataRemover{f.removed}, OnRoutes: f.routes.publish,
		HealthTimeout: healthTimeout,
		Logger:        slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, c := range configure {
		c(&opts)
	}
	sup, err = supervisor.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	f.sup = sup
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = sup.Run(ctx) }()
	var once sync.Once
	f.stop = func() {
		once.Do(func() {
			cancel()
			<-done
			f.driver.StopAll(context.Background())
		})
	}
	t.Cleanup(f.stop)
	return f
}

func openStore(t *testing.T) *mongodb.Store {
	t.Helper()
	srv, err := ferret.Start(t.TempDir(), "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	s, err := mongodb.Open(context.Background(), srv.URI(), "registry_test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// waitState polls the tenant until it is in state want and returns it.
func waitState(t *testing.T, sup *supervisor.Supervisor, key string, want controlplane.State, within time.Duration) *controlplane.Tenant {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		tn, err := sup.Tenant(context.Background(), key)
		if err == nil && tn.State == want {
			return tn
		}
		if time.Now().After(deadline) {
			t.Fatalf("tenant %s: state %v (err %v), want %s", key, func() any {
				if tn != nil {
					return tn.State + " " + controlplane.State(tn.StateReason)
				}
				return nil
			}(), err, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// eventually polls cond every 10 ms for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second) // generous: CI runs packages in parallel on 2 cores
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func healthy(addr string) bool {
	resp, err := http.Get(addr + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

func TestLifecycle(t *testing.T) {
	outer := t
	store := openStore(t)
	f := start(t, store, nil, 0)
	ctx := context.Background()

	begin := time.Now()
	created, err := f.sup.CreateTenant(ctx, controlplane.NewTenant{Key: "Acme", Name: "Acme", Admin: controlplane.NewUser{Email: "admin@acme.test"}})
	if err != nil {
		t.Fatal(err)
	}
	if created.Tenant.Key != "acme" || created.Tenant.State != controlplane.StateCreationRequested ||
		len(created.Admin.Password) != supervisor.GeneratedPasswordLength || created.Tenant.URL != "http://acme.localhost:8080" {
		t.Fatalf("created %+v admin %+v", created.Tenant, created.Admin)
	}
	live := waitState(t, f.sup, "acme", controlplane.StateLive, 10*time.Second)
	took := time.Since(begin)
	t.Logf("acme live in %s", took)
	if took > 3*time.Second {
		t.Errorf("creation took %s, want about 1 s", took)
	}
	rt, ok := f.routes.route("acme")
	if !ok || rt.State != traefik.StateLive || rt.Backend != "http://"+live.Cell.Address || !slices.Equal(rt.Hosts, []string{"acme.localhost"}) {
		t.Fatalf("route %+v (found %v), tenant cell %+v", rt, ok, live.Cell)
	}
	if !healthy(rt.Backend) {
		t.Fatal("routed backend is not healthy")
	}

	t.Run("validation and duplicates", func(t *testing.T) {
		for _, tc := range []struct {
			req  controlplane.NewTenant
			code string
		}{
			{controlplane.NewTenant{Key: "acme", Name: "Again", Admin: controlplane.NewUser{Email: "a@b.test"}}, controlplane.EConflict},
			{controlplane.NewTenant{Key: "www", Name: "W", Admin: controlplane.NewUser{Email: "a@b.test"}}, controlplane.EInvalid},
			{controlplane.NewTenant{Key: "-bad", Name: "B", Admin: controlplane.NewUser{Email: "a@b.test"}}, controlplane.EInvalid},
			{controlplane.NewTenant{Key: "okay", Name: "", Admin: controlplane.NewUser{Email: "a@b.test"}}, controlplane.EInvalid},
			{controlplane.NewTenant{Key: "okay", Name: "O", Admin: controlplane.NewUser{Email: "nope"}}, controlplane.EInvalid},
			{controlplane.NewTenant{Key: "okay", Name: "O", Plan: "gold", Admin: controlplane.NewUser{Email: "a@b.test"}}, controlplane.EInvalid},
			{controlplane.NewTenant{Key: "okay", Name: "O", AllowedOrigins: []string{"https://x.test/path"}, Admin: controlplane.NewUser{Email: "a@b.test"}}, controlplane.EInvalid},
			{controlplane.NewTenant{Key: "okay", Name: "O", Admin: controlplane.NewUser{Email: "a@b.test", Password: "short"}}, controlplane.EInvalid},
		} {
			if _, err := f.sup.CreateTenant(ctx, tc.req); controlplane.ErrorCode(err) != tc.code {
				t.Errorf("%+v: got %v, want %s", tc.req, err, tc.code)
			}
		}
	})

	t.Run("a killed cell is restarted and the tenant stays routable", func(t *testing.T) {
		before := live.Cell.PID
		if err := syscall.Kill(before, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			st, _ := f.sup.CellStatus(ctx, "acme")
			if st.Healthy && st.PID != before {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cell not back: %+v", st)
			}
			time.Sleep(20 * time.Millisecond)
		}
		rt, _ := f.routes.route("acme")
		if !healthy(rt.Backend) {
			t.Fatal("route does not reach the restarted cell")
		}
	})

	t.Run("suspend and resume", func(t *testing.T) {
		if _, err := f.sup.SuspendTenant(ctx, "acme"); err != nil {
			t.Fatal(err)
		}
		waitState(t, f.sup, "acme", controlplane.StateSuspended, 10*time.Second)
		eventually(t, "suspended route", func() bool { rt, _ := f.routes.route("acme"); return rt.State == traefik.StateSuspended })
		if st, _ := f.sup.CellStatus(ctx, "acme"); st.State != controlplane.CellStopped {
			t.Fatalf("cell while suspended: %+v", st)
		}
		if tn, err := f.sup.SuspendTenant(ctx, "acme"); err != nil || tn.State != controlplane.StateSuspended {
			t.Fatalf("second suspend: %v %v", tn, err)
		}
		if _, err := f.sup.ResumeTenant(ctx, "acme"); err != nil {
			t.Fatal(err)
		}
		waitState(t, f.sup, "acme", controlplane.StateLive, 10*time.Second)
		if rt, _ := f.routes.route("acme"); rt.State != traefik.StateLive || !healthy(rt.Backend) {
			t.Fatalf("route after resume: %+v", rt)
		}
	})

	t.Run("a restarted control plane starts the cells of live tenants again", func(t *testing.T) {
		f.stop()
		tn, _ := store.TenantByKey(ctx, "acme")
		if healthy("http://" + tn.Cell.Address) {
			t.Fatal("cell survived StopAll")
		}
		f = start(outer, store, nil, 0) // lives on for the next subtests
		deadline := time.Now().Add(10 * time.Second)
		for {
			if rt, ok := f.routes.route("acme"); ok && healthy(rt.Backend) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("acme not served after restart: %+v", f.routes.last())
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	t.Run("delete tears down and frees the key", func(t *testing.T) {
		tn, err := f.sup.DeleteTenant(ctx, "acme", true)
		if err != nil {
			t.Fatal(err)
		}
		waitState(t, f.sup, tn.ID, controlplane.StateDeleted, 10*time.Second)
		// The route table follows the state at the next pass.
		eventually(t, "deleted tenant unrouted", func() bool { _, ok := f.routes.route("acme"); return !ok })
		eventually(t, "tenant data removed", func() bool {
			f.removed.mu.Lock()
			defer f.removed.mu.Unlock()
			return slices.Contains(f.removed.ids, tn.ID)
		})
		// deleting → deleting: the teardown actions (route, cell stop, cell removal, data).
		want := []controlplane.State{"creation-requested", "creating", "live", "suspend-requested", "suspended", "resume-requested", "live",
			"deletion-pending", "deleting", "deleting", "deleting", "deleting", "deleting", "deleted"}
		var states []controlplane.State
		eventually(t, "all events recorded", func() bool {
			evs, _ := f.sup.TenantEvents(ctx, tn.ID)
			states = states[:0]
			for _, e := range evs {
				states = append(states, e.To)
			}
			return len(states) >= len(want)
		})
		if !slices.Equal(states, want) {
			t.Fatalf("events %v, want %v", states, want)
		}
		again, err := f.sup.CreateTenant(ctx, controlplane.NewTenant{Key: "acme", Name: "Acme 2", Admin: controlplane.NewUser{Email: "admin@acme.test"}})
		if err != nil {
			t.Fatal(err)
		}
		if again.Tenant.ID == tn.ID {
			t.Fatal("tenant id reused")
		}
		waitState(t, f.sup, "acme", controlplane.StateLive, 10*time.Second)
	})
}

// TestDeletionWithoutGracePeriod: with no grace period a deletion tears down at once, and a
// deleted tenant cannot be resumed. (TestDeletionGracePeriod covers the grace period.)
func TestDeletionWithoutGracePeriod(t *testing.T) {
	store := openStore(t)
	f := start(t, store, nil, 0)
	ctx := context.Background()
	if _, err := f.sup.CreateTenant(ctx, controlplane.NewTenant{Key: "globex", Name: "Globex", Admin: controlplane.NewUser{Email: "a@globex.test"}}); err != nil {
		t.Fatal(err)
	}
	waitState(t, f.sup, "globex", controlplane.StateLive, 10*time.Second)
	tn, err := f.sup.DeleteTenant(ctx, "globex", false) // DeleteGrace is 0 in this fixture: teardown at once
	if err != nil || tn.State != controlplane.StateDeletionPending {
		t.Fatalf("%+v %v", tn, err)
	}
	waitState(t, f.sup, tn.ID, controlplane.StateDeleted, 10*time.Second)
	if _, err := f.sup.ResumeTenant(ctx, tn.ID); controlplane.ErrorCode(err) != controlplane.EConflict {
		t.Fatalf("resume of a deleted tenant: %v", err)
	}
}

func TestCreationFailsWhenTheCellNeverGetsHealthy(t *testing.T) {
	store := openStore(t)
	f := start(t, store, []string{"FAKECELL_EXIT=1"}, time.Second)
	ctx := context.Background()
	if _, err := f.sup.CreateTenant(ctx, controlplane.NewTenant{Key: "broken", Name: "Broken", Admin: controlplane.NewUser{Email: "a@broken.test"}}); err != nil {
		t.Fatal(err)
	}
	tn := waitState(t, f.sup, "broken", controlplane.StateCreationFailed, 10*time.Second)
	if tn.StateReason == "" {
		t.Fatal("no failure reason")
	}
	t.Logf("reason: %s", tn.StateReason)
	if st, _ := f.sup.CellStatus(ctx, "broken"); st.State != controlplane.CellStopped {
		t.Fatalf("failed cell not stopped: %+v", st)
	}
	if _, ok := f.routes.route("broken"); ok {
		t.Fatal("failed tenant routed")
	}
}
