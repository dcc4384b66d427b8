package supervisor_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"atende/controlplane"
	"atende/controlplane/mongodb"
	"atende/controlplane/supervisor"
)

// TestSharedTierDatabaseUserFallback runs the shared tier's database-user path against the
// embedded FerretDB, which has no users: the creation's provisioning action tries createUser,
// records the fallback (Stack.DatabaseAuth "unsupported", no user, no password) with its event,
// and the tenant goes live; its teardown runs the database-user action (dropUser, a no-op here)
// and ends in the tombstone. A dedicated tenant is refused (unsupported) by this supervisor,
// which has no DatabaseServers.
func TestSharedTierDatabaseUserFallback(t *testing.T) {
	store := openStore(t)
	f := start(t, store, nil, 20*time.Second, func(o *supervisor.Options) {
		o.DatabaseUsers = mongodb.TenantUsers{Client: store.Client()}
	})
	ctx := context.Background()
	if _, err := f.sup.CreateTenant(ctx, controlplane.NewTenant{Key: "dedi", Name: "D", Dedicated: true,
		Admin: controlplane.NewUser{Email: "a@d.test"}}); controlplane.ErrorCode(err) != controlplane.EUnsupported {
		t.Fatalf("dedicated tenant on the process driver: %v", err)
	}
	if f.sup.DedicatedSupported() {
		t.Fatal("DedicatedSupported without DatabaseServers")
	}
	created, err := f.sup.CreateTenant(ctx, controlplane.NewTenant{Key: "acme", Name: "Acme", Admin: controlplane.NewUser{Email: "a@acme.test"}})
	if err != nil {
		t.Fatal(err)
	}
	id := created.Tenant.ID
	live := waitState(t, f.sup, "acme", controlplane.StateLive, 20*time.Second)
	if live.Tier != controlplane.TierShared || live.Stack.Done != 1 || live.Stack.DatabaseAuth != controlplane.DatabaseAuthUnsupported ||
		live.Stack.DatabaseUser != "" {
		t.Fatalf("live tenant's stack: tier %q, %+v", live.Tier, live.Stack)
	}
	stored, err := store.Tenant(ctx, id)
	if err != nil || stored.Secrets.DatabasePassword != "" || stored.Stack != live.Stack || stored.Tier != controlplane.TierShared {
		t.Fatalf("stored tenant: %+v / %+v, %v", stored.Stack, stored.Secrets.DatabasePassword != "", err)
	}
	if !hasEvent(t, f.sup, id, "provision 1/1: database users unsupported") {
		t.Error("no event records the fallback")
	}
	actions := f.sup.TeardownActions(live)
	names := make([]string, len(actions))
	for i, a := range actions {
		names[i] = a.Name
	}
	if want := []string{supervisor.TeardownRoute, supervisor.TeardownCellStop, supervisor.TeardownCellRemove, supervisor.StackDatabaseUser, "data-0"}; !slices.Equal(names, want) {
		t.Fatalf("teardown actions %v, want %v", names, want)
	}
	if _, err := f.sup.DeleteTenant(ctx, "acme", true); err != nil {
		t.Fatal(err)
	}
	waitState(t, f.sup, id, controlplane.StateDeleted, 20*time.Second)
	if !hasEvent(t, f.sup, id, "teardown 4/5: database user "+controlplane.DatabaseUserName(id)+" dropped") {
		t.Error("no event of the database user's teardown")
	}
}

// hasEvent reports whether one of the tenant's events has a reason starting with prefix.
func hasEvent(t *testing.T, sup *supervisor.Supervisor, id, prefix string) bool {
	t.Helper()
	evs, err := sup.TenantEvents(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(evs, func(e controlplane.Event) bool { return strings.HasPrefix(e.Reason, prefix) })
}

// TestWithDatabaseUser checks the cell URI of a tenant with its own database user.
func TestWithDatabaseUser(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"mongodb://mongo:27017/", "mongodb://u_x:p%40ss@mongo:27017/?authSource=t_x"},
		{"mongodb://root:old@mongo:27017/?replicaSet=rs0", "mongodb://u_x:p%40ss@mongo:27017/?authSource=t_x&replicaSet=rs0"},
		{"mongodb://mongo", "mongodb://u_x:p%40ss@mongo/?authSource=t_x"},
	} {
		got, err := supervisor.WithDatabaseUser(tc.in, "u_x", "p@ss", "t_x")
		if err != nil || got != tc.want {
			t.Errorf("WithDatabaseUser(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := supervisor.WithDatabaseUser("http://x", "u", "p", "d"); err == nil {
		t.Error("an http:// URI was accepted")
	}
}
