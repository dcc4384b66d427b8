package process_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"atende/cell"
	"atende/controlplane"
	"atende/controlplane/process"
)

// TestFenceAndResources: the driver records the fence of the step that touched a cell
// (controlplane.WithFence), refuses the calls of an older one, and lists its cell directories
// (those named like a tenant id) for a sweep.
func TestFenceAndResources(t *testing.T) {
	d := newDriver(t, process.Options{})
	ctx := context.Background()
	id := controlplane.NewTenantID()
	cfg := cell.Config{TenantID: id}
	if _, err := d.Start(controlplane.WithFence(ctx, 5), cfg); err != nil {
		t.Fatal(err)
	}
	if st := status(t, d, id); st.Fence != 5 || st.State != controlplane.CellRunning {
		t.Fatalf("status %+v", st)
	}
	for name, call := range map[string]func() error{
		"Start":  func() error { _, err := d.Start(controlplane.WithFence(ctx, 4), cfg); return err },
		"Stop":   func() error { return d.Stop(controlplane.WithFence(ctx, 4), id) },
		"Remove": func() error { return d.Remove(controlplane.WithFence(ctx, 4), id) },
	} {
		if err := call(); controlplane.ErrorCode(err) != controlplane.EConflict {
			t.Errorf("%s with an older fence: %v, want a conflict", name, err)
		}
	}
	if st := status(t, d, id); st.State != controlplane.CellRunning {
		t.Fatalf("an older fence stopped the cell: %+v", st)
	}
	if _, err := d.Start(controlplane.WithFence(ctx, 7), cfg); err != nil { // adopted as it is
		t.Fatal(err)
	}
	if st := status(t, d, id); st.Fence != 7 {
		t.Fatalf("fence after a newer Start: %+v", st)
	}
	if err := d.Stop(controlplane.WithFence(ctx, 7), id); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Start(controlplane.WithFence(ctx, 6), cfg); controlplane.ErrorCode(err) != controlplane.EConflict {
		t.Fatalf("restart of a stopped cell with an older fence: %v", err)
	}

	rs, err := d.TenantResources(ctx)
	if err != nil || len(rs) != 1 {
		t.Fatalf("resources %+v %v", rs, err)
	}
	dir := filepath.Dir(rs[0].Name) // the driver's directory
	if err := os.MkdirAll(filepath.Join(dir, "not-a-tenant"), 0o700); err != nil {
		t.Fatal(err)
	}
	rs, err = d.TenantResources(ctx)
	if err != nil || len(rs) != 1 || rs[0].TenantID != id || rs[0].Kind != controlplane.ResourceProcessCell || rs[0].Name != filepath.Join(dir, id) {
		t.Fatalf("resources %+v %v", rs, err)
	}
	if err := d.Remove(controlplane.WithFence(ctx, 8), id); err != nil {
		t.Fatal(err)
	}
	if rs, err := d.TenantResources(ctx); err != nil || len(rs) != 0 {
		t.Fatalf("resources after Remove %+v %v", rs, err)
	}
}
