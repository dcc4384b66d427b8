package supervisor_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.mongodb.org/mongo-driver/v2/bson"

	"atende/cell"
	"atende/controlplane"
	"atende/controlplane/supervisor"
	"atende/traefik"
)

func newTenant(key string) controlplane.NewTenant {
	return controlplane.NewTenant{Key: key, Name: key, Admin: controlplane.NewUser{Email: "admin@" + key + ".test"}}
}

// TestDeletionGracePeriod: a deletion waits out the grace period with the cell stopped and the
// host paused; cancelling it returns the tenant to live or suspended; after it, the teardown runs
// in order with an event per action and leaves a tombstone whose key is free.
func TestDeletionGracePeriod(t *testing.T) {
	st := newStack(t)
	n := st.start(nil, func(o *supervisor.Options) { o.DeleteGrace = time.Hour })
	ctx := context.Background()
	created, err := n.sup.CreateTenant(ctx, newTenant("acme"))
	if err != nil {
		t.Fatal(err)
	}
	id := created.Tenant.ID
	st.waitFor(t, id, controlplane.StateLive, 10*time.Second)
	st.seed(t, id)

	t.Run("delete waits for the grace period with the cell stopped", func(t *testing.T) {
		before := time.Now()
		tn, err := n.sup.DeleteTenant(ctx, "acme", false)
		if err != nil || tn.State != controlplane.StateDeletionPending || tn.DeleteAt == nil ||
			tn.DeleteAt.Sub(before) < time.Hour-time.Minute || tn.StateBeforeDeletion != controlplane.StateLive {
			t.Fatalf("%+v %v", tn, err)
		}
		eventually(t, "cell stopped and host paused", func() bool {
			cs, _ := n.sup.CellStatus(ctx, id)
			rt, _ := n.routes.route("acme")
			return cs.State == controlplane.CellStopped && rt.State == traefik.StateSuspended
		})
		time.Sleep(300 * time.Millisecond) // several passes: nothing more happens
		if tn := st.tenant(id); tn.State != controlplane.StateDeletionPending {
			t.Fatalf("state %s during the grace period", tn.State)
		}
		if h := st.holdings(t, id); !h[controlplane.ResourceDatabase] || !h[controlplane.ResourceObjectPrefix] || !h[controlplane.ResourceProcessCell] {
			t.Fatalf("data removed during the grace period: %v", h)
		}
	})

	t.Run("cancel returns a live tenant to live", func(t *testing.T) {
		tn, err := n.sup.CancelDeletion(ctx, "acme")
		if err != nil || tn.State != controlplane.StateResumeRequested || tn.DeleteAt != nil {
			t.Fatalf("%+v %v", tn, err)
		}
		st.waitFor(t, id, controlplane.StateLive, 10*time.Second)
		eventually(t, "routed live to a healthy cell", func() bool {
			rt, _ := n.routes.route("acme")
			return rt.State == traefik.StateLive && healthy(rt.Backend)
		})
		if _, err := n.sup.CancelDeletion(ctx, "acme"); controlplane.ErrorCode(err) != controlplane.EConflict {
			t.Fatalf("cancel without a pending deletion: %v", err)
		}
	})

	t.Run("cancel returns a suspended tenant to suspended", func(t *testing.T) {
		if _, err := n.sup.SuspendTenant(ctx, "acme"); err != nil {
			t.Fatal(err)
		}
		st.waitFor(t, id, controlplane.StateSuspended, 10*time.Second)
		if _, err := n.sup.DeleteTenant(ctx, "acme", false); err != nil {
			t.Fatal(err)
		}
		if _, err := n.sup.CancelDeletion(ctx, id); err != nil {
			t.Fatal(err)
		}
		st.waitFor(t, id, controlplane.StateSuspended, 10*time.Second)
		if cs, _ := n.sup.CellStatus(ctx, id); cs.State == controlplane.CellRunning {
			t.Fatalf("cell of a suspended tenant: %+v", cs)
		}
	})

	t.Run("after the grace period the teardown runs in order and frees the key", func(t *testing.T) {
		if _, err := n.sup.DeleteTenant(ctx, "acme", false); err != nil {
			t.Fatal(err)
		}
		if _, err := n.sup.DeleteTenant(ctx, "acme", true); err != nil { // the grace is over
			t.Fatal(err)
		}
		tomb := st.waitFor(t, id, controlplane.StateDeleted, 10*time.Second)
		if _, err := n.sup.CancelDeletion(ctx, id); controlplane.ErrorCode(err) != controlplane.EConflict {
			t.Fatalf("cancel after the teardown: %v", err)
		}
		for kind, has := range st.holdings(t, id) {
			if has {
				t.Errorf("%s left after the teardown", kind)
			}
		}
		if len(tomb.Secrets.SigningKeySeed) != 0 || len(tomb.Secrets.BootstrapUsers) != 0 || tomb.Cell.Address != "" {
			t.Fatalf("tombstone keeps secrets or cell facts: %+v", tomb)
		}
		evs, err := n.sup.TenantEvents(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		checkEvents(t, evs)
		var teardown []string
		for _, e := range evs {
			if strings.HasPrefix(e.Reason, "teardown ") {
				teardown = append(teardown, e.Reason)
			}
		}
		want := []string{"route removed", "cell stopped", "cell removed", "database t_", "objects under t/", "credentials revoked"}
		if len(teardown) != len(want) {
			t.Fatalf("teardown events %q", teardown)
		}
		for i, w := range want {
			if !strings.Contains(teardown[i], w) {
				t.Fatalf("teardown event %d %q, want %q: %q", i, teardown[i], w, teardown)
			}
		}
		if evs[len(evs)-1].To != controlplane.StateDeleted {
			t.Fatalf("last event %+v", evs[len(evs)-1])
		}
		again, err := n.sup.CreateTenant(ctx, newTenant("acme"))
		if err != nil || again.Tenant.ID == id {
			t.Fatalf("re-registered acme: %+v %v", again, err)
		}
		fresh := st.waitFor(t, again.Tenant.ID, controlplane.StateLive, 10*time.Second)
		if h := st.holdings(t, id); h[controlplane.ResourceDatabase] || h[controlplane.ResourceCredentials] || h[controlplane.ResourceProcessCell] {
			t.Fatalf("the new acme revived the old one's resources: %v", h)
		}
		if env := cellEnv(t, fresh); strings.Contains(strings.Join([]string{env[cell.EnvDatabase], env[cell.EnvS3Prefix], env[cell.EnvTenantID]}, " "), id) {
			t.Fatalf("the new acme's cell reaches the old one's data: %v", env)
		}
		noOrphans(t, n.sup)
	})
}

// TestDeleteRightAfterCreate: a deletion 100 ms after the creation request, while the cell is
// starting, converges to deleted with nothing left.
func TestDeleteRightAfterCreate(t *testing.T) {
	st := newStack(t)
	n := st.start(nil)
	ctx := context.Background()
	for _, key := range []string{"hasty", "hasty2", "hasty3"} {
		created, err := n.sup.CreateTenant(ctx, newTenant(key))
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		if _, err := n.sup.DeleteTenant(ctx, created.Tenant.ID, true); err != nil {
			t.Fatal(err)
		}
		id := created.Tenant.ID
		st.waitFor(t, id, controlplane.StateDeleted, 15*time.Second)
		eventually(t, "the deleted tenant unrouted", func() bool { _, ok := n.routes.route(key); return !ok })
		for kind, has := range st.holdings(t, id) {
			if has {
				t.Errorf("%s: %s left", key, kind)
			}
		}
		if cs, _ := n.driver.Status(ctx, id); cs.State != controlplane.CellAbsent {
			t.Fatalf("%s: cell %+v", key, cs)
		}
		evs, _ := n.sup.TenantEvents(ctx, id)
		checkEvents(t, evs)
	}
	noOrphans(t, n.sup)
}

// TestDeletingOneTenantSparesAnother: deleting acme leaves every resource of acme2 (a key with
// acme as prefix) in place and working.
func TestDeletingOneTenantSparesAnother(t *testing.T) {
	st := newStack(t)
	n := st.start(nil)
	ctx := context.Background()
	ids := map[string]string{}
	for _, key := range []string{"acme", "acme2"} {
		created, err := n.sup.CreateTenant(ctx, newTenant(key))
		if err != nil {
			t.Fatal(err)
		}
		ids[key] = created.Tenant.ID
	}
	for _, id := range ids {
		st.waitFor(t, id, controlplane.StateLive, 10*time.Second)
		st.seed(t, id)
	}
	acme2 := st.tenant(ids["acme2"])
	access, secret := st.access.Credentials(acme2.ID)
	object := controlplane.S3Prefix(acme2.ID) + "c/1/file"
	if _, err := n.sup.DeleteTenant(ctx, "acme", true); err != nil {
		t.Fatal(err)
	}
	st.waitFor(t, ids["acme"], controlplane.StateDeleted, 10*time.Second)
	for kind, has := range st.holdings(t, ids["acme"]) {
		if has {
			t.Errorf("acme: %s left", kind)
		}
	}
	if h := st.holdings(t, acme2.ID); !h[controlplane.ResourceDatabase] || !h[controlplane.ResourceObjectPrefix] ||
		!h[controlplane.ResourceCredentials] || !h[controlplane.ResourceProcessCell] {
		t.Fatalf("acme2 lost resources: %v", h)
	}
	if tn := st.tenant(acme2.ID); tn.State != controlplane.StateLive || tn.Cell.PID != acme2.Cell.PID {
		t.Fatalf("acme2 after acme's deletion: %+v", tn)
	}
	if rt, ok := n.routes.route("acme2"); !ok || rt.State != traefik.StateLive || !healthy(rt.Backend) {
		t.Fatalf("acme2 route %+v", rt)
	}
	if n, err := st.store.Client().Database(controlplane.DatabaseName(acme2.ID)).Collection("chats").CountDocuments(ctx, bson.D{}); err != nil || n != 1 {
		t.Fatalf("acme2 documents: %d %v", n, err)
	}
	if code := objectStatus(t, st.s3.Endpoint(), access, secret, object, false); code != 200 {
		t.Fatalf("acme2 reads its attachment with its own credentials: %d", code)
	}
	noOrphans(t, n.sup)
}

// TestSweep: a sweep lists the resources of unknown and deleted tenants, and deletes nothing.
func TestSweep(t *testing.T) {
	st := newStack(t)
	n := st.start(nil)
	ctx := context.Background()
	created, err := n.sup.CreateTenant(ctx, newTenant("keep"))
	if err != nil {
		t.Fatal(err)
	}
	st.waitFor(t, created.Tenant.ID, controlplane.StateLive, 10*time.Second)
	st.seed(t, created.Tenant.ID)
	gone, err := n.sup.CreateTenant(ctx, newTenant("gone"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.sup.DeleteTenant(ctx, gone.Tenant.ID, true); err != nil {
		t.Fatal(err)
	}
	st.waitFor(t, gone.Tenant.ID, controlplane.StateDeleted, 10*time.Second)
	noOrphans(t, n.sup)

	// What a crash of an older control plane, or a hand-made mess, could leave.
	ghost := controlplane.NewTenantID()
	st.seed(t, ghost)
	if _, _, err := st.access.GrantTenant(ctx, ghost); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(st.cellsDir, ghost), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := st.s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(controlplane.S3Prefix(gone.Tenant.ID) + "late"),
		Body: strings.NewReader("x")}); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(st.cellsDir, "not-a-tenant"), 0o700); err != nil {
		t.Fatal(err)
	}
	for range 2 { // a sweep never deletes: the second finds the same
		r, err := n.sup.Sweep(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, o := range r.Orphans {
			got = append(got, o.Kind+" "+o.TenantID+" "+o.Reason+" "+o.TenantKey)
		}
		expect := map[string]bool{
			controlplane.ResourceCredentials + " " + ghost + " unknown-tenant ":               true,
			controlplane.ResourceDatabase + " " + ghost + " unknown-tenant ":                  true,
			controlplane.ResourceObjectPrefix + " " + ghost + " unknown-tenant ":              true,
			controlplane.ResourceObjectPrefix + " " + gone.Tenant.ID + " deleted-tenant gone": true,
			controlplane.ResourceProcessCell + " " + ghost + " unknown-tenant ":               true,
		}
		if len(got) != len(expect) {
			t.Fatalf("orphans %q", got)
		}
		for _, g := range got {
			if !expect[g] {
				t.Fatalf("unexpected orphan %q in %q", g, got)
			}
		}
	}
}
