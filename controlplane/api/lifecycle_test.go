package api_test

import (
	"context"
	"crypto/ed25519"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"atende/cell"
	"atende/controlplane"
	"atende/controlplane/api"
	"atende/controlplane/ferret"
	"atende/controlplane/mongodb"
	"atende/controlplane/process"
	"atende/controlplane/supervisor"
)

// startGraceStack runs the API over a real supervisor (registry on an embedded FerretDB, process
// driver with the fake cell in cellsDir) whose deletions wait for a one-hour grace period.
func startGraceStack(t *testing.T, cellsDir string) *api.Client {
	t.Helper()
	srv, err := ferret.Start(t.TempDir(), "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	store, err := mongodb.Open(ctx, srv.URI(), "")
	if err != nil {
		t.Fatal(err)
	}
	drv, err := process.New(process.Options{Binary: fakeBin, Dir: cellsDir})
	if err != nil {
		t.Fatal(err)
	}
	sup, err := supervisor.New(supervisor.Options{Store: store, Driver: drv, DeleteGrace: time.Hour, Tick: 50 * time.Millisecond,
		Platform: supervisor.Platform{Domain: "localhost", PublicPort: 8080}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = sup.Run(ctx) }()
	pub, priv, _ := ed25519.GenerateKey(nil)
	app := api.New(api.Options{Service: sup, TokenKey: pub})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = app.Listener(ln) }()
	t.Cleanup(func() {
		_ = app.Shutdown()
		cancel()
		<-done
		drv.StopAll(context.Background())
		_ = store.Close(context.Background())
	})
	token, err := api.IssueSuperAdminToken(priv, "test", cell.ControlPlaneAudience, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &api.Client{BaseURL: "http://" + ln.Addr().String(), Token: token}
}

// waitState polls GET /api/tenants/{id} until the tenant is in state want.
func waitState(t *testing.T, c *api.Client, id string, want controlplane.State) *controlplane.Tenant {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		tn, err := c.GetTenant(context.Background(), id)
		if err == nil && tn.State == want {
			return tn
		}
		if time.Now().After(deadline) {
			t.Fatalf("tenant %s: %+v %v, want %s", id, tn, err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDeletionGraceCancelAndSweep(t *testing.T) {
	cells := t.TempDir()
	c := startGraceStack(t, cells)
	ctx := context.Background()
	created, err := c.CreateTenant(ctx, api.CreateTenantRequest{Key: "acme", Name: "Acme", AdminEmail: "admin@acme.test"})
	if err != nil {
		t.Fatal(err)
	}
	id := created.Tenant.ID
	waitState(t, c, id, controlplane.StateLive)

	tn, err := c.DeleteTenant(ctx, "acme", false)
	if err != nil || tn.State != controlplane.StateDeletionPending || tn.DeleteAt == nil || time.Until(*tn.DeleteAt) < 59*time.Minute ||
		tn.StateBeforeDeletion != controlplane.StateLive {
		t.Fatalf("DELETE: %+v %v", tn, err)
	}
	tn, err = c.CancelDeletion(ctx, "acme")
	if err != nil || tn.State != controlplane.StateResumeRequested || tn.DeleteAt != nil {
		t.Fatalf("cancel-delete: %+v %v", tn, err)
	}
	waitState(t, c, id, controlplane.StateLive)
	if _, err := c.CancelDeletion(ctx, "acme"); code(err) != controlplane.EConflict {
		t.Fatalf("cancel-delete of a live tenant: %v", err)
	}
	if _, err := c.CancelDeletion(ctx, "nobody"); code(err) != controlplane.ENotFound {
		t.Fatalf("cancel-delete of nobody: %v", err)
	}

	if _, err := c.DeleteTenant(ctx, "acme", true); err != nil {
		t.Fatal(err)
	}
	waitState(t, c, id, controlplane.StateDeleted)
	evs, err := c.TenantEvents(ctx, id)
	if err != nil || len(evs) < 10 || evs[len(evs)-1].To != controlplane.StateDeleted {
		t.Fatalf("events %+v %v", evs, err)
	}

	report, err := c.Sweep(ctx)
	if err != nil || len(report.Orphans) != 0 || len(report.Kinds) != 1 || report.Kinds[0] != controlplane.ResourceProcessCell {
		t.Fatalf("sweep %+v %v", report, err)
	}
	// A cell directory of the deleted tenant, recreated behind the control plane's back, and one
	// of a tenant nobody knows.
	ghost := controlplane.NewTenantID()
	for _, dir := range []string{id, ghost} {
		if err := os.MkdirAll(filepath.Join(cells, dir), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	report, err = c.Sweep(ctx)
	if err != nil || len(report.Orphans) != 2 {
		t.Fatalf("sweep %+v %v", report, err)
	}
	reasons := map[string]string{}
	for _, o := range report.Orphans {
		reasons[o.TenantID] = o.Reason + " " + o.TenantKey
	}
	if reasons[id] != controlplane.OrphanDeletedTenant+" acme" || reasons[ghost] != controlplane.OrphanUnknownTenant+" " {
		t.Fatalf("orphans %+v", report.Orphans)
	}
	if _, err := os.Stat(filepath.Join(cells, ghost)); err != nil {
		t.Fatal("the sweep deleted something")
	}
	req, _ := http.NewRequest(http.MethodGet, c.BaseURL+"/api/sweep", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("sweep without a token: %d", resp.StatusCode)
	}
}
