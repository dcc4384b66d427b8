package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"atende/cell"
	"atende/controlplane"
	"atende/controlplane/api"
)

// cellKeys asks the fake cell at addr which signing kid and previous keys it was started with.
func cellKeys(t *testing.T, addr string) (string, []cell.VerificationKey) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/kid")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	kid, raw, _ := strings.Cut(string(data), "\n")
	var previous []cell.VerificationKey
	if raw != "" {
		if err := json.Unmarshal([]byte(raw), &previous); err != nil {
			t.Fatalf("previous keys %q: %v", raw, err)
		}
	}
	return kid, previous
}

func TestRotateKeysRestartsTheCellAndKeepsTheTenantLive(t *testing.T) {
	s := startStack(t)
	ctx := context.Background()
	if _, err := s.good.CreateTenant(ctx, api.CreateTenantRequest{Key: "rotor", Name: "Rotor", AdminEmail: "admin@rotor.test"}); err != nil {
		t.Fatal(err)
	}
	live := waitTenant(t, s, "rotor", func(tn *controlplane.Tenant) bool { return tn.State == controlplane.StateLive })
	if kid, _ := cellKeys(t, live.Cell.Address); kid == "" || kid != live.SigningKeyID {
		t.Fatalf("cell signs with %q, tenant says %q", kid, live.SigningKeyID)
	}

	// Watch the tenant while it rotates: it must never leave live.
	var stop atomic.Bool
	var watched sync.WaitGroup
	var notLive atomic.Value
	watched.Add(1)
	go func() {
		defer watched.Done()
		for !stop.Load() {
			if tn, err := s.good.GetTenant(ctx, "rotor"); err == nil && tn.State != controlplane.StateLive {
				notLive.Store(string(tn.State))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()

	kids := []string{live.SigningKeyID}
	for round := 1; round <= 2; round++ {
		begin := time.Now()
		rotated, err := s.good.RotateKeys(ctx, "rotor")
		if err != nil {
			t.Fatal(err)
		}
		if rotated.State != controlplane.StateLive || rotated.Generation != int64(round) || rotated.SigningKeyID == "" ||
			rotated.SigningKeyID == kids[len(kids)-1] {
			t.Fatalf("round %d: answer %+v", round, rotated)
		}
		kids = append(kids, rotated.SigningKeyID)
		after := waitTenant(t, s, "rotor", func(tn *controlplane.Tenant) bool { return tn.Cell.Generation == int64(round) })
		t.Logf("round %d: cell restarted with %s in %s", round, rotated.SigningKeyID, time.Since(begin))
		if after.State != controlplane.StateLive || after.Cell.Address != live.Cell.Address {
			t.Fatalf("round %d: after the restart %s on %s, want live on %s", round, after.State, after.Cell.Address, live.Cell.Address)
		}
		st, err := s.good.CellStatus(ctx, "rotor")
		if err != nil || !st.Healthy {
			t.Fatalf("round %d: cell %+v %v", round, st, err)
		}
		kid, previous := cellKeys(t, after.Cell.Address)
		if kid != rotated.SigningKeyID || len(previous) != round {
			t.Fatalf("round %d: cell runs kid %q with previous %+v, want %q and %d previous", round, kid, previous, rotated.SigningKeyID, round)
		}
		for i, k := range previous { // newest retired first
			if want := kids[len(kids)-2-i]; k.KID != want || len(k.PublicKey) != 32 || time.Since(k.RetiredAt) > time.Minute {
				t.Fatalf("round %d: previous key %d is %+v, want kid %s retired just now", round, i, k, want)
			}
		}
	}
	stop.Store(true)
	watched.Wait()
	if v := notLive.Load(); v != nil {
		t.Fatalf("the tenant left live during a rotation (seen %v)", v)
	}

	evs, err := s.good.TenantEvents(ctx, "rotor")
	if err != nil {
		t.Fatal(err)
	}
	var rotations, restarts int
	for _, e := range evs {
		switch {
		case strings.HasPrefix(e.Reason, "signing key rotated"):
			rotations++
		case strings.HasPrefix(e.Reason, "cell restarted"):
			restarts++
		}
	}
	if rotations != 2 || restarts != 2 {
		t.Fatalf("events %+v: want 2 rotations and 2 restarts", evs)
	}

	if _, err := s.good.RotateKeys(ctx, "nobody"); code(err) != controlplane.ENotFound {
		t.Fatalf("rotate an unknown tenant: %v", err)
	}
	if _, err := s.good.DeleteTenant(ctx, "rotor", true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.good.RotateKeys(ctx, "rotor"); code(err) != controlplane.EConflict {
		t.Fatalf("rotate a deleted tenant: %v", err)
	}
}

// waitTenant polls the tenant for up to 10 s until ok holds.
func waitTenant(t *testing.T, s *stack, key string, ok func(*controlplane.Tenant) bool) *controlplane.Tenant {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		tn, err := s.good.GetTenant(context.Background(), key)
		if err == nil && ok(tn) {
			return tn
		}
		if time.Now().After(deadline) {
			t.Fatalf("tenant %s: %+v %v", key, tn, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
