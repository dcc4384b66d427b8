package mongodb_test

import (
	"context"
	"errors"
	"testing"

	"atende/controlplane"
	"atende/controlplane/mongodb"
)

// TestTenantUsersOnFerretDB checks the capability fallback against the embedded FerretDB, which
// has no users: creating a tenant's user reports ErrDatabaseUsersUnsupported (so the supervisor
// records it and keeps the platform's URI), dropping one succeeds, and neither leaves anything
// behind (no database is created by the attempt).
func TestTenantUsersOnFerretDB(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	users := mongodb.TenantUsers{Client: st.Client()}
	id := controlplane.NewTenantID()
	db, user := controlplane.DatabaseName(id), controlplane.DatabaseUserName(id)
	err := users.EnsureTenantUser(ctx, db, user, "a-long-random-password")
	if !errors.Is(err, controlplane.ErrDatabaseUsersUnsupported) {
		t.Fatalf("EnsureTenantUser on FerretDB: %v, want ErrDatabaseUsersUnsupported", err)
	}
	if err := users.DropTenantUser(ctx, db, user); err != nil {
		t.Fatalf("DropTenantUser on FerretDB: %v", err)
	}
	names, err := st.Client().ListDatabaseNames(ctx, map[string]any{"name": db})
	if err != nil || len(names) != 0 {
		t.Fatalf("databases named %s after the attempt: %v, %v", db, names, err)
	}
	// A server error that is not "unsupported" is not mistaken for it: an invalid user name.
	if err := users.EnsureTenantUser(ctx, "", user, "x"); err == nil || errors.Is(err, controlplane.ErrDatabaseUsersUnsupported) {
		t.Fatalf("EnsureTenantUser with an empty database name: %v", err)
	}
}
