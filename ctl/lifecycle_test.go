package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"atende/controlplane"
)

// CancelDeletion of the in-memory service: a tenant whose key ends in "-gone" is past its grace
// period (conflict); any other goes back to live.
func (s *tenants) CancelDeletion(ctx context.Context, idOrKey string) (*controlplane.Tenant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.byKey {
		if t.ID == idOrKey || t.Key == idOrKey {
			if strings.HasSuffix(t.Key, "-gone") {
				return nil, controlplane.Errorf(controlplane.EConflict, "the deletion of tenant %s cannot be cancelled: it is deleting, not deletion-pending", t.Key)
			}
			t.State = controlplane.StateResumeRequested
			cp := *t
			t.State = controlplane.StateLive // the next read finds it live
			return &cp, nil
		}
	}
	return nil, controlplane.Errorf(controlplane.ENotFound, "no tenant with id or key %q", idOrKey)
}

// Sweep of the in-memory service reports one database of an unknown tenant and one prefix of a
// deleted one.
func (s *tenants) Sweep(ctx context.Context) (*controlplane.SweepReport, error) {
	return &controlplane.SweepReport{At: time.Now().UTC(), Kinds: []string{controlplane.ResourceDatabase, controlplane.ResourceObjectPrefix},
		Orphans: []controlplane.Orphan{
			{Resource: controlplane.Resource{Kind: controlplane.ResourceDatabase, Name: "t_ghost", TenantID: "ghost"}, Reason: controlplane.OrphanUnknownTenant},
			{Resource: controlplane.Resource{Kind: controlplane.ResourceObjectPrefix, Name: "t/old/", TenantID: "old"}, Reason: controlplane.OrphanDeletedTenant, TenantKey: "acme"},
		}}, nil
}

func TestCancelDeleteAndSweep(t *testing.T) {
	url, token := server(t)
	env := map[string]string{envAPI: url, envToken: token}
	for _, key := range []string{"acme", "old-gone"} {
		if r := ctl(env, "", "tenant", "create", key, "--name", key, "--admin-email", "a@b.test"); r.code != 0 {
			t.Fatalf("create %s: %d %s", key, r.code, r.errOut)
		}
	}
	for _, tc := range []struct {
		name           string
		args           []string
		code           int
		stderr, stdout string
	}{
		{"cancel-delete", []string{"tenant", "cancel-delete", "acme"}, 0, "restoring acme… live in", "State            live"},
		{"cancel-delete too late", []string{"tenant", "cancel-delete", "old-gone"}, 1, "cannot be cancelled: it is deleting, not deletion-pending (conflict)", ""},
		{"cancel-delete nobody", []string{"tenant", "cancel-delete", "nobody"}, 1, "(not_found)", ""},
		{"cancel-delete without key", []string{"tenant", "cancel-delete"}, 2, "accepts 1 arg(s)", ""},
		{"sweep", []string{"sweep", "--dry-run"}, 0, "", "database       t_ghost  ghost   unknown tenant"},
		{"sweep deleted", []string{"sweep", "--dry-run"}, 0, "", "tenant deleted (was acme)\n2 left behind (dry run: nothing was deleted)."},
		{"sweep without --dry-run lists too", []string{"sweep"}, 0, "", "t/old/"},
		{"sweep never deletes", []string{"sweep", "--dry-run=false"}, 2, "a sweep only lists (--dry-run)", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ctl(env, "", tc.args...)
			if r.code != tc.code || !strings.Contains(r.errOut, tc.stderr) || !strings.Contains(r.out, tc.stdout) {
				t.Fatalf("exit %d (want %d)\nstderr: %s\nstdout: %s", r.code, tc.code, r.errOut, r.out)
			}
		})
	}
	r := ctl(env, "", "--json", "sweep", "--dry-run")
	var report controlplane.SweepReport
	if err := json.Unmarshal([]byte(r.out), &report); err != nil || r.code != 0 || len(report.Orphans) != 2 ||
		report.Orphans[0].Name != "t_ghost" || report.Orphans[1].TenantKey != "acme" {
		t.Fatalf("json sweep: %d %v %+v %s", r.code, err, report, r.errOut)
	}
}
