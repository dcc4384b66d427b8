package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"atende/controlplane"
	"atende/controlplane/api"
)

// TestDedicatedTierRefusedByTheProcessDriver checks the answers to tier requests on a control
// plane whose driver has no dedicated tier (process): a dedicated tenant, asked either way, is a
// 422 with the stable code "unsupported"; an unknown tier, or one contradicting "dedicated", is a
// 400 "invalid"; none of them registers anything; a shared tenant is created with tier "shared".
func TestDedicatedTierRefusedByTheProcessDriver(t *testing.T) {
	s := startStack(t)
	ctx := context.Background()
	post := func(body map[string]any) (int, controlplane.Error) {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", s.url+"/api/tenants", bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+s.good.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct{ Error controlplane.Error }
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out.Error
	}
	base := func(key string, extra map[string]any) map[string]any {
		m := map[string]any{"key": key, "name": "Acme", "adminEmail": "admin@acme.test"}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	for _, tc := range []struct {
		name   string
		extra  map[string]any
		status int
		code   string
	}{
		{"dedicated flag", map[string]any{"dedicated": true}, 422, controlplane.EUnsupported},
		{"dedicated tier", map[string]any{"tier": "dedicated"}, 422, controlplane.EUnsupported},
		{"unknown tier", map[string]any{"tier": "gold"}, 400, controlplane.EInvalid},
		{"contradiction", map[string]any{"tier": "shared", "dedicated": true}, 400, controlplane.EInvalid},
	} {
		st, e := post(base("acme", tc.extra))
		if st != tc.status || e.Code != tc.code || e.Message == "" {
			t.Errorf("%s: %d %+v, want %d %s", tc.name, st, e, tc.status, tc.code)
		}
	}
	if ts, err := s.good.ListTenants(ctx, api.ListOptions{All: true}); err != nil || len(ts) != 0 {
		t.Fatalf("tenants after refused creations: %v, %v", ts, err)
	}
	if st, e := post(base("acme", map[string]any{"tier": "shared"})); st != 202 {
		t.Fatalf("shared tenant: %d %+v", st, e)
	}
	tn, err := s.good.GetTenant(ctx, "acme")
	if err != nil || tn.Tier != controlplane.TierShared || tn.Dedicated {
		t.Fatalf("shared tenant: %+v, %v", tn, err)
	}
}
