package mongodb_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"atende/controlplane"
	"atende/controlplane/ferret"
	"atende/controlplane/mongodb"
)

// openStores starts one embedded FerretDB and opens n stores on the same registry database, each
// with a client of its own, as n control planes would.
func openStores(t *testing.T, n int) []*mongodb.Store {
	t.Helper()
	srv, err := ferret.Start(t.TempDir(), "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	var out []*mongodb.Store
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		s, err := mongodb.Open(ctx, srv.URI(), "registry_test")
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close(context.Background()) })
		out = append(out, s)
	}
	return out
}

func TestLeases(t *testing.T) {
	stores := openStores(t, 3)
	a, b := stores[0], stores[1]
	ctx := context.Background()
	tenant := controlplane.NewTenantID()

	l1, err := a.AcquireLease(ctx, tenant, "a", time.Minute)
	if err != nil || l1.Fence != 1 || l1.Epoch != 1 || l1.Owner != "a" || time.Until(l1.ExpiresAt) < 59*time.Second {
		t.Fatalf("first lease %+v %v", l1, err)
	}
	if _, err := b.AcquireLease(ctx, tenant, "b", time.Minute); controlplane.ErrorCode(err) != controlplane.EConflict {
		t.Fatalf("lease held by a taken by b: %v", err)
	}
	if _, err := a.AcquireLease(ctx, tenant, "a", time.Minute); controlplane.ErrorCode(err) != controlplane.EConflict {
		t.Fatalf("a held lease taken twice: %v", err)
	}
	renewed, err := a.RenewLease(ctx, l1, time.Minute)
	if err != nil || renewed.Fence != 1 || renewed.Epoch != 2 {
		t.Fatalf("renewal %+v %v", renewed, err)
	}
	if _, err := a.RenewLease(ctx, l1, time.Minute); controlplane.ErrorCode(err) != controlplane.EConflict {
		t.Fatalf("renewal of an epoch that is not the latest: %v", err)
	}
	if err := a.ReleaseLease(ctx, renewed); err != nil {
		t.Fatal(err)
	}
	if err := a.ReleaseLease(ctx, renewed); err != nil {
		t.Fatalf("second release: %v", err)
	}
	l2, err := b.AcquireLease(ctx, tenant, "b", 200*time.Millisecond)
	if err != nil || l2.Fence != 3 {
		t.Fatalf("lease after release %+v %v", l2, err)
	}

	t.Run("an expired lease is taken over with a higher fence and its holder cannot renew it", func(t *testing.T) {
		if _, err := a.AcquireLease(ctx, tenant, "a", time.Minute); controlplane.ErrorCode(err) != controlplane.EConflict {
			t.Fatalf("unexpired lease taken: %v", err)
		}
		time.Sleep(250 * time.Millisecond)
		l3, err := a.AcquireLease(ctx, tenant, "a", time.Minute)
		if err != nil || l3.Fence != 4 {
			t.Fatalf("takeover %+v %v", l3, err)
		}
		if _, err := b.RenewLease(ctx, l2, time.Minute); controlplane.ErrorCode(err) != controlplane.EConflict {
			t.Fatalf("the lapsed holder renewed: %v", err)
		}
		if err := b.ReleaseLease(ctx, l2); err != nil {
			t.Fatal(err)
		}
		if _, err := b.AcquireLease(ctx, tenant, "b", time.Minute); controlplane.ErrorCode(err) != controlplane.EConflict {
			t.Fatalf("the lapsed holder's release freed the new holder's lease: %v", err)
		}
		if err := a.ReleaseLease(ctx, l3); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a store without hints finds the latest epoch", func(t *testing.T) {
		fresh := stores[2]
		cur, ok, err := fresh.Lease(ctx, tenant)
		if err != nil || !ok || cur.Epoch != 4 {
			t.Fatalf("latest %+v %v %v", cur, ok, err)
		}
		l, err := fresh.AcquireLease(ctx, tenant, "c", time.Minute)
		if err != nil || l.Fence != 5 {
			t.Fatalf("%+v %v", l, err)
		}
		_ = fresh.ReleaseLease(ctx, l)
	})

	t.Run("concurrent claims from several control planes have exactly one winner", func(t *testing.T) {
		other := controlplane.NewTenantID()
		var last int64
		for round := range 8 {
			const perStore = 7
			var wg sync.WaitGroup
			var mu sync.Mutex
			var wins []controlplane.Lease
			for si, s := range stores {
				for i := range perStore {
					wg.Add(1)
					go func() {
						defer wg.Done()
						l, err := s.AcquireLease(ctx, other, fmt.Sprintf("s%d-%d", si, i), time.Minute)
						switch controlplane.ErrorCode(err) {
						case "":
							mu.Lock()
							wins = append(wins, l)
							mu.Unlock()
						case controlplane.EConflict:
						default:
							t.Errorf("unexpected error: %v", err)
						}
					}()
				}
			}
			wg.Wait()
			if len(wins) != 1 {
				t.Fatalf("round %d: %d winners %+v, want 1", round, len(wins), wins)
			}
			if wins[0].Fence <= last {
				t.Fatalf("round %d: fence %d after %d", round, wins[0].Fence, last)
			}
			last = wins[0].Fence
			if err := stores[round%3].ReleaseLease(ctx, wins[0]); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("invalid", func(t *testing.T) {
		if _, err := a.AcquireLease(ctx, tenant, "", time.Minute); controlplane.ErrorCode(err) != controlplane.EInvalid {
			t.Fatal(err)
		}
		if _, err := a.AcquireLease(ctx, tenant, "a", 0); controlplane.ErrorCode(err) != controlplane.EInvalid {
			t.Fatal(err)
		}
	})
}
