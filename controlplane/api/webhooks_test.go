package api_test

import (
	"context"
	"crypto/ed25519"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"atende/cell"
	"atende/cell/webhook"
	"atende/controlplane"
	"atende/controlplane/api"
	"atende/controlplane/ferret"
	"atende/controlplane/mongodb"
	"atende/controlplane/platformhook"
	"atende/controlplane/process"
	"atende/controlplane/supervisor"
)

// TestTenancyAndWebhookDeliveries runs the API over a real supervisor, registry and process
// driver with lifecycle webhooks to a real HTTP receiver: PUT …/tenancy restarts the cell in the
// new mode (and is refused with a clear error for bad input, changing nothing), and GET
// /api/webhooks/deliveries lists what the receiver got.
func TestTenancyAndWebhookDeliveries(t *testing.T) {
	const secret = "api-test-platform-secret"
	var mu sync.Mutex
	var got []string // event types received with a valid signature
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if webhook.Verify(secret, r.Header.Get(webhook.HeaderTimestamp), r.Header.Get(webhook.HeaderSignature), body, time.Minute, time.Now()) != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		mu.Lock()
		got = append(got, r.Header.Get(webhook.HeaderEvent))
		mu.Unlock()
	}))
	t.Cleanup(receiver.Close)

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
	drv, err := process.New(process.Options{Binary: fakeBin, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	sup, err := supervisor.New(supervisor.Options{Store: store, Driver: drv, Platform: supervisor.Platform{Domain: "localhost", PublicPort: 8080},
		Tick: 50 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	hooks, err := platformhook.New(platformhook.Options{URL: receiver.URL, Secret: secret, Store: store, Poll: 30 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = sup.Run(ctx) }()
	go func() { defer wg.Done(); _ = hooks.Run(ctx) }()
	pub, priv, _ := ed25519.GenerateKey(nil)
	app := api.New(api.Options{Service: sup, TokenKey: pub, Webhooks: platformhook.Log{Store: store, URL: receiver.URL}, Logger: quiet})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = app.Listener(ln) }()
	t.Cleanup(func() {
		_ = app.Shutdown()
		cancel()
		wg.Wait()
		drv.StopAll(context.Background())
		_ = store.Close(context.Background())
	})
	token, err := api.IssueSuperAdminToken(priv, "test", cell.ControlPlaneAudience, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := &api.Client{BaseURL: "http://" + ln.Addr().String(), Token: token}
	anonymous := &api.Client{BaseURL: c.BaseURL}

	created, err := c.CreateTenant(ctx, api.CreateTenantRequest{Key: "acme", Name: "Acme", AdminEmail: "admin@acme.test"})
	if err != nil {
		t.Fatal(err)
	}
	if created.Tenancy != controlplane.TenancyStrict {
		t.Fatalf("new tenant's tenancy %q, want strict", created.Tenancy)
	}
	poll := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting: %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	var live *controlplane.Tenant
	poll("acme live", func() bool {
		live, _ = c.GetTenant(ctx, "acme")
		return live != nil && live.State == controlplane.StateLive
	})
	cellTenancy := func(addr string) string {
		resp, err := http.Get("http://" + addr + "/tenancy")
		if err != nil {
			return "unreachable"
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if m := cellTenancy(live.Cell.Address); m != "" && m != controlplane.TenancyStrict {
		t.Fatalf("a new tenant's cell runs with tenancy %q", m)
	}

	t.Run("tenancy: bad input changes nothing", func(t *testing.T) {
		for _, tc := range []struct {
			client   *api.Client
			key      string
			mode     string
			code     string
			httpCode int
		}{
			{c, "acme", "lenient", controlplane.EInvalid, 400},
			{c, "acme", "", controlplane.EInvalid, 400},
			{c, "globex", controlplane.TenancyCompat, controlplane.ENotFound, 404},
			{anonymous, "acme", controlplane.TenancyCompat, controlplane.EUnauthorized, 401},
		} {
			if _, err := tc.client.SetTenancy(ctx, tc.key, tc.mode); code(err) != tc.code {
				t.Errorf("%s %q: %v, want %s", tc.key, tc.mode, err, tc.code)
			}
		}
		after, err := c.GetTenant(ctx, "acme")
		if err != nil || after.Tenancy != controlplane.TenancyStrict || after.Generation != live.Generation {
			t.Fatalf("after refused requests: %+v %v", after, err)
		}
	})

	t.Run("tenancy: compat restarts the cell in compat mode, and back", func(t *testing.T) {
		for _, mode := range []string{controlplane.TenancyCompat, controlplane.TenancyStrict} {
			tn, err := c.SetTenancy(ctx, "acme", mode)
			if err != nil {
				t.Fatal(err)
			}
			if tn.Tenancy != mode || tn.State != controlplane.StateLive {
				t.Fatalf("answer %+v", tn)
			}
			poll("cell restarted in "+mode, func() bool {
				cur, err := c.GetTenant(ctx, "acme")
				return err == nil && cur.Cell.Generation == tn.Generation && cellTenancy(cur.Cell.Address) == mode
			})
			again, err := c.SetTenancy(ctx, "acme", mode) // idempotent
			if err != nil || again.Generation != tn.Generation {
				t.Fatalf("setting %s again: %+v %v", mode, again, err)
			}
		}
		evs, err := c.TenantEvents(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		var reasons []string
		for _, e := range evs {
			if e.From == e.To && e.Reason != "" && e.Reason[:7] == "tenancy" {
				reasons = append(reasons, e.Reason)
			}
		}
		if len(reasons) != 2 || reasons[0] != "tenancy set to compat by super-admin (was strict)" {
			t.Fatalf("tenancy events %q", reasons)
		}
	})

	t.Run("tenancy: only live or suspended tenants", func(t *testing.T) {
		if _, err := c.DeleteTenant(ctx, "acme", false); err != nil {
			t.Fatal(err)
		}
		if _, err := c.SetTenancy(ctx, "acme", controlplane.TenancyCompat); code(err) != controlplane.EConflict {
			t.Fatalf("deletion-pending tenant: %v, want conflict", err)
		}
		if _, err := c.CancelDeletion(ctx, "acme"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("deliveries", func(t *testing.T) {
		// The supervisor may still be recording events (the cancelled deletion brings the tenant
		// back to live): wait until the newest event is the newest delivery, reading both again
		// each time, and compare those two reads.
		var evs []controlplane.Event
		var log *controlplane.WebhookLog
		poll("every event delivered", func() bool {
			var err1, err2 error
			evs, err1 = c.TenantEvents(ctx, "acme")
			log, err2 = c.WebhookDeliveries(ctx, "acme", 0)
			return err1 == nil && err2 == nil && len(evs) > 0 && len(log.Deliveries) >= len(evs) &&
				log.Deliveries[0].EventID == mongodb.EventID(created.ID, evs[len(evs)-1].Seq)
		})
		if !log.Enabled || log.URL != receiver.URL {
			t.Fatalf("enabled %v url %q", log.Enabled, log.URL)
		}
		for i, d := range log.Deliveries[:len(evs)] {
			ev := evs[len(evs)-1-i] // newest first
			if d.EventID != mongodb.EventID(created.ID, ev.Seq) || d.Type != platformhook.TypeOf(ev) || d.Outcome != controlplane.DeliveryDelivered ||
				d.StatusCode != 200 || d.TenantKey != "acme" {
				t.Errorf("delivery %d: %+v, want event %d (%s) delivered", i, d, ev.Seq, platformhook.TypeOf(ev))
			}
		}
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n < len(evs) {
			t.Errorf("receiver verified %d deliveries, want at least %d", n, len(evs))
		}
		two, err := c.WebhookDeliveries(ctx, "", 2)
		if err != nil || len(two.Deliveries) != 2 || two.Deliveries[0].ID != log.Deliveries[0].ID {
			t.Fatalf("limit 2: %+v %v", two, err)
		}
		for _, tc := range []struct {
			client *api.Client
			tenant string
			limit  int
			code   string
		}{
			{c, "globex", 0, controlplane.ENotFound},
			{c, "", controlplane.MaxDeliveriesPage + 1, controlplane.EInvalid},
			{anonymous, "", 0, controlplane.EUnauthorized},
		} {
			if _, err := tc.client.WebhookDeliveries(ctx, tc.tenant, tc.limit); code(err) != tc.code {
				t.Errorf("tenant %q limit %d: %v, want %s", tc.tenant, tc.limit, err, tc.code)
			}
		}
		resp, err := http.Get(c.BaseURL + "/api/webhooks/deliveries?limit=-3")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("no token: %d", resp.StatusCode)
		}
	})
}
