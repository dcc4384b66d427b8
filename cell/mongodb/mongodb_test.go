package mongodb_test

import (
	"context"
	"os"
	"testing"

	"atende/cell/mongodb"
	"atende/controlplane/ferret"
)

// TestEnsureIndexesTwice holds the restart case: a cell started on an existing database must
// find its indexes in place (FerretDB v1 used to drop the connection on a multi-index call).
func TestEnsureIndexesTwice(t *testing.T) {
	dir, err := os.MkdirTemp("", "atende-mongodb-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	srv, err := ferret.Start(dir, "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		store, err := mongodb.Open(ctx, srv.URI(), "t_restart", "restart")
		if err != nil {
			t.Fatal(err)
		}
		if err := store.EnsureIndexes(ctx); err != nil {
			t.Fatalf("start %d: %v", i+1, err)
		}
		store.Close(ctx)
	}
}
