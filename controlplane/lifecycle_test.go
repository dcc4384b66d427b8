package controlplane_test

import (
	"context"
	"testing"

	"atende/controlplane"
)

func TestRestoreState(t *testing.T) {
	for before, want := range map[controlplane.State]controlplane.State{
		controlplane.StateLive:              controlplane.StateResumeRequested,
		controlplane.StateResumeRequested:   controlplane.StateResumeRequested,
		"":                                  controlplane.StateResumeRequested,
		controlplane.StateSuspended:         controlplane.StateSuspendRequested,
		controlplane.StateSuspendRequested:  controlplane.StateSuspendRequested,
		controlplane.StateResumeFailed:      controlplane.StateSuspendRequested,
		controlplane.StateCreationRequested: controlplane.StateCreationRequested,
		controlplane.StateCreating:          controlplane.StateCreationRequested,
		controlplane.StateCreationFailed:    controlplane.StateCreationRequested,
	} {
		got := controlplane.RestoreState(before)
		if got != want || !controlplane.CanTransition(controlplane.StateDeletionPending, got) {
			t.Errorf("RestoreState(%q) = %s, want %s (legal from deletion-pending)", before, got, want)
		}
	}
	// Every state that can be deleted can be restored.
	for _, s := range controlplane.States() {
		if controlplane.CanTransition(s, controlplane.StateDeletionPending) && !controlplane.CanTransition(controlplane.StateDeletionPending, controlplane.RestoreState(s)) {
			t.Errorf("a deletion requested in %s cannot be cancelled", s)
		}
	}
}

func TestFindOrphans(t *testing.T) {
	live := &controlplane.Tenant{ID: "live", Key: "acme", State: controlplane.StateLive}
	deleting := &controlplane.Tenant{ID: "deleting", Key: "old", State: controlplane.StateDeleting}
	gone := &controlplane.Tenant{ID: "gone", Key: "globex", State: controlplane.StateDeleted}
	found := []controlplane.Resource{
		{Kind: controlplane.ResourceObjectPrefix, Name: "t/gone/", TenantID: "gone"},
		{Kind: controlplane.ResourceDatabase, Name: "t_live", TenantID: "live"},
		{Kind: controlplane.ResourceDatabase, Name: "t_ghost", TenantID: "ghost"},
		{Kind: controlplane.ResourceDatabase, Name: "t_gone", TenantID: "gone"},
		{Kind: controlplane.ResourceDatabase, Name: "t_deleting", TenantID: "deleting"},
	}
	got := controlplane.FindOrphans(found, []*controlplane.Tenant{live, deleting, gone})
	want := []controlplane.Orphan{
		{Resource: found[2], Reason: controlplane.OrphanUnknownTenant},
		{Resource: found[3], Reason: controlplane.OrphanDeletedTenant, TenantKey: "globex"},
		{Resource: found[0], Reason: controlplane.OrphanDeletedTenant, TenantKey: "globex"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("orphan %d: %+v, want %+v (all: %+v)", i, got[i], want[i], got)
		}
	}
	if got := controlplane.FindOrphans(nil, nil); got == nil || len(got) != 0 {
		t.Fatalf("no resources: %#v", got)
	}
}

func TestIsTenantID(t *testing.T) {
	if !controlplane.IsTenantID(controlplane.NewTenantID()) {
		t.Fatal("a new tenant id is not a tenant id")
	}
	for _, s := range []string{"", "acme", "abcdefghijklmnopqrstuvwxy1", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz2", "../abcdefghijklmnopqrstuvw"} {
		if controlplane.IsTenantID(s) {
			t.Errorf("IsTenantID(%q)", s)
		}
	}
}

func TestFence(t *testing.T) {
	ctx := context.Background()
	if _, ok := controlplane.FenceFrom(ctx); ok {
		t.Fatal("fence in an empty context")
	}
	if f, ok := controlplane.FenceFrom(controlplane.WithFence(ctx, 7)); !ok || f != 7 {
		t.Fatalf("fence %d %v", f, ok)
	}
	if _, ok := controlplane.FenceFrom(controlplane.WithFence(ctx, 0)); ok {
		t.Fatal("fence 0 counts as a fence")
	}
}
