package docker_test

import (
	"context"
	"slices"
	"testing"

	"atende/controlplane"
	"atende/controlplane/docker"
)

// TestFenceOfTheCallAndResources shows that the fence a supervisor step puts in its context
// (controlplane.WithFence) takes the place of the driver's own: it labels what it creates, is
// reported by Status, and an older one is refused; and that the driver lists its containers and
// networks for a sweep.
func TestFenceOfTheCallAndResources(t *testing.T) {
	requireEngine(t)
	ctx := context.Background()
	d := newDriver(t, docker.Options{Resources: limits})
	id := newTenant(t)
	cfg := cellConfig(id)
	if _, err := d.Start(controlplane.WithFence(ctx, 5), cfg); err != nil {
		t.Fatal(err)
	}
	if got := inspect(t, id).Config.Labels[docker.LabelFence]; got != "5" {
		t.Fatalf("fence label %q, want 5", got)
	}
	if st, err := d.Status(ctx, id); err != nil || st.Fence != 5 {
		t.Fatalf("status %+v %v", st, err)
	}
	if err := d.Stop(controlplane.WithFence(ctx, 3), id); controlplane.ErrorCode(err) != controlplane.EConflict {
		t.Fatalf("Stop with an older fence: %v, want a conflict", err)
	}
	rs, err := d.TenantResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []controlplane.Resource{
		{Kind: controlplane.ResourceContainer, Name: docker.ContainerName(id), TenantID: id},
		{Kind: controlplane.ResourceNetwork, Name: docker.NetworkName(id), TenantID: id},
	}
	for _, w := range want {
		if !slices.Contains(rs, w) {
			t.Fatalf("resources %+v lack %+v", rs, w)
		}
	}
	if err := d.Remove(controlplane.WithFence(ctx, 6), id); err != nil {
		t.Fatal(err)
	}
	rs, _ = d.TenantResources(ctx)
	for _, r := range rs {
		if r.TenantID == id {
			t.Fatalf("%+v left after Remove", r)
		}
	}
}
