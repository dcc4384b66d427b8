package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"atende/cell"
	"atende/controlplane"
	"atende/controlplane/api"
)

// SetTenancy of the in-memory service: the mode is recorded and the generation grows (the cell
// catches up on a later read, see Tenant).
func (s *tenants) SetTenancy(ctx context.Context, idOrKey, mode string) (*controlplane.Tenant, error) {
	if err := controlplane.ValidateTenancy(mode); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.byKey {
		if t.ID == idOrKey || t.Key == idOrKey {
			if t.Tenancy != mode {
				t.Tenancy = mode
				t.Generation++
			}
			cp := *t
			return &cp, nil
		}
	}
	return nil, controlplane.Errorf(controlplane.ENotFound, "no tenant with id or key %q", idOrKey)
}

// webhookLog is an in-memory delivery log behind the real API handlers: one retried and one
// delivered attempt of acme's events.
type webhookLog struct{}

func (webhookLog) WebhookLog(ctx context.Context, f controlplane.DeliveryFilter) (*controlplane.WebhookLog, error) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	next := at.Add(20 * time.Second)
	all := []controlplane.LifecycleDelivery{
		{ID: "id-acme:4#1", EventID: "id-acme:4", Type: "tenant.suspended", TenantID: "id-acme", TenantKey: "acme", Seq: 4, Attempt: 1,
			At: at, StatusCode: 503, Outcome: controlplane.DeliveryRetrying, NextAttemptAt: &next},
		{ID: "id-acme:3#1", EventID: "id-acme:3", Type: "tenant.live", TenantID: "id-acme", TenantKey: "acme", Seq: 3, Attempt: 1,
			At: at.Add(-time.Minute), StatusCode: 200, Outcome: controlplane.DeliveryDelivered},
	}
	if f.Limit > 0 && f.Limit < len(all) {
		all = all[:f.Limit]
	}
	return &controlplane.WebhookLog{Enabled: true, URL: "https://platform.example/hooks", Deliveries: all,
		Pending: []controlplane.WebhookCursor{{TenantID: "id-acme", Seq: 3, PendingSeq: 4, Attempts: 1, NextAt: next}}}, nil
}

// webhookServer is server with the delivery log.
func webhookServer(t *testing.T) (string, string) {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(nil)
	app := api.New(api.Options{Service: &tenants{byKey: map[string]*controlplane.Tenant{}, reads: map[string]int{}}, TokenKey: pub,
		Webhooks: webhookLog{}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = app.Listener(ln) }()
	t.Cleanup(func() { _ = app.Shutdown() })
	token, err := api.IssueSuperAdminToken(priv, "test", cell.ControlPlaneAudience, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return "http://" + ln.Addr().String(), token
}

func TestSetTenancyAndWebhookDeliveries(t *testing.T) {
	url, token := webhookServer(t)
	env := map[string]string{envAPI: url, envToken: token}
	if r := ctl(env, "", "tenant", "create", "acme", "--name", "Acme", "--admin-email", "a@b.test"); r.code != 0 {
		t.Fatalf("create: %d %s", r.code, r.errOut)
	}
	for _, tc := range []struct {
		name           string
		args           []string
		code           int
		stderr, stdout string
	}{
		{"compat", []string{"tenant", "set-tenancy", "acme", "compat"}, 0, "restarting the cell of acme… healthy in", "Tenant acme: tenancy compat."},
		{"shown", []string{"tenant", "get", "acme"}, 0, "", "Tenancy          compat"},
		{"strict again", []string{"tenant", "set-tenancy", "acme", "strict"}, 0, "", "Tenant acme: tenancy strict."},
		{"unknown mode", []string{"tenant", "set-tenancy", "acme", "lenient"}, 2, `tenancy "lenient" is unknown (use strict or compat)`, ""},
		{"no mode", []string{"tenant", "set-tenancy", "acme"}, 2, "accepts 2 arg(s)", ""},
		{"unknown tenant", []string{"tenant", "set-tenancy", "nobody", "compat"}, 1, "(not_found)", ""},
		{"compat needs a migration", []string{"tenant", "import", "acme", "-f", "x.gz", "--compat"}, 2, "--compat goes with --from-mongo", ""},
		{"deliveries", []string{"webhooks", "deliveries"}, 0, "platform URL: https://platform.example/hooks",
			"2026-01-02T03:04:05Z  acme    id-acme:4  tenant.suspended  1        503     retrying at 2026-01-02T03:04:25Z"},
		{"pending", []string{"webhooks", "deliveries", "--tenant", "acme"}, 0, "", "pending: tenant id-acme, event 4 after 1 failed attempts"},
		{"bad limit", []string{"webhooks", "deliveries", "--limit", "501"}, 1, "limit must be a number from 1 to 500 (invalid)", ""},
		{"unknown tenant's deliveries", []string{"webhooks", "deliveries", "--tenant", "nobody"}, 1, "(not_found)", ""},
		{"webhooks needs a subcommand", []string{"webhooks"}, 2, "needs a subcommand", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ctl(env, "", tc.args...)
			if r.code != tc.code || !strings.Contains(r.errOut, tc.stderr) || !strings.Contains(r.out, tc.stdout) {
				t.Fatalf("exit %d (want %d)\nstderr: %s\nstdout: %s", r.code, tc.code, r.errOut, r.out)
			}
		})
	}
	r := ctl(env, "", "--json", "webhooks", "deliveries", "--limit", "1")
	var log controlplane.WebhookLog
	if err := json.Unmarshal([]byte(r.out), &log); err != nil || r.code != 0 || len(log.Deliveries) != 1 || log.Deliveries[0].EventID != "id-acme:4" {
		t.Fatalf("json deliveries: %d %v %+v %s", r.code, err, log, r.errOut)
	}
}
