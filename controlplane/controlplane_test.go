package controlplane_test

import (
	"crypto/ed25519"
	"regexp"
	"strings"
	"testing"
	"time"

	"atende/cell"
	"atende/controlplane"
)

func TestValidateKey(t *testing.T) {
	for _, tc := range []struct {
		key string
		ok  bool
	}{
		{"acme", true}, {"a-1", true}, {"abc", true}, {strings.Repeat("a", 63), true}, {"globex2", true},
		{"ab", false}, {strings.Repeat("a", 64), false}, {"-acme", false}, {"acme-", false}, {"Acme", false},
		{"ac_me", false}, {"ac.me", false}, {"acmé", false}, {"", false}, {"xn--acme", false}, {"ab--c", false},
		{"www", false}, {"api", false}, {"admin", false}, {"app", false}, {"static", false}, {"s3", false},
		{"traefik", false}, {"localhost", false},
	} {
		err := controlplane.ValidateKey(tc.key)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateKey(%q) = %v, want ok=%v", tc.key, err, tc.ok)
		}
		if err != nil && controlplane.ErrorCode(err) != controlplane.EInvalid {
			t.Errorf("ValidateKey(%q): code %s", tc.key, controlplane.ErrorCode(err))
		}
	}
}

func TestValidateOrigin(t *testing.T) {
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"https://www.acme.com", true}, {"http://localhost:3000", true},
		{"ftp://acme.com", false}, {"https://acme.com/", false}, {"https://acme.com/x", false},
		{"https://u@acme.com", false}, {"acme.com", false}, {"https://", false}, {"https://acme.com?x=1", false},
	} {
		if err := controlplane.ValidateOrigin(tc.origin); (err == nil) != tc.ok {
			t.Errorf("ValidateOrigin(%q) = %v, want ok=%v", tc.origin, err, tc.ok)
		}
	}
}

func TestNewTenantID(t *testing.T) {
	seen := map[string]bool{}
	re := regexp.MustCompile(`^[a-z2-7]{26}$`)
	for range 1000 {
		id := controlplane.NewTenantID()
		if !re.MatchString(id) || seen[id] {
			t.Fatalf("bad or repeated id %q", id)
		}
		seen[id] = true
	}
}

func TestTransitions(t *testing.T) {
	for from, tos := range controlplane.Transitions {
		for _, to := range tos {
			if !to.Valid() {
				t.Errorf("%s → unknown state %s", from, to)
			}
		}
	}
	if len(controlplane.States()) != len(controlplane.Transitions) {
		t.Fatal("States() and Transitions disagree")
	}
	for _, tc := range []struct {
		from, to controlplane.State
		ok       bool
	}{
		{controlplane.StateCreationRequested, controlplane.StateCreating, true},
		{controlplane.StateCreating, controlplane.StateLive, true},
		{controlplane.StateLive, controlplane.StateSuspendRequested, true},
		{controlplane.StateDeletionPending, controlplane.StateResumeRequested, true},
		{controlplane.StateLive, controlplane.StateDeleted, false},
		{controlplane.StateDeleted, controlplane.StateCreationRequested, false},
		{controlplane.StateSuspended, controlplane.StateLive, false},
	} {
		tn := &controlplane.Tenant{ID: "x", State: tc.from}
		ev, err := tn.Transition(tc.to, "because", time.Unix(100, 0))
		if (err == nil) != tc.ok {
			t.Errorf("%s → %s: %v, want ok=%v", tc.from, tc.to, err, tc.ok)
			continue
		}
		if !tc.ok {
			if controlplane.ErrorCode(err) != controlplane.EConflict || tn.State != tc.from {
				t.Errorf("%s → %s: code %s, state %s", tc.from, tc.to, controlplane.ErrorCode(err), tn.State)
			}
			continue
		}
		if tn.State != tc.to || ev.From != tc.from || ev.To != tc.to || ev.Reason != "because" || !tn.UpdatedAt.Equal(time.Unix(100, 0)) {
			t.Errorf("%s → %s: tenant %+v event %+v", tc.from, tc.to, tn, ev)
		}
	}
}

func TestRouteState(t *testing.T) {
	want := map[controlplane.State]string{
		controlplane.StateLive: controlplane.RouteLive, controlplane.StateSuspended: controlplane.RouteSuspended,
		controlplane.StateSuspendRequested: controlplane.RouteSuspended, controlplane.StateDeletionPending: controlplane.RouteSuspended,
		controlplane.StateCreating: "", controlplane.StateDeleted: "", controlplane.StateCreationFailed: "",
	}
	for s, w := range want {
		if got := s.RouteState(); got != w {
			t.Errorf("%s: route %q, want %q", s, got, w)
		}
	}
}

func TestRotateSigningKey(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	keep := 30 * 24 * time.Hour
	seed := make([]byte, ed25519.SeedSize)
	s := controlplane.Secrets{SigningKeySeed: seed, SigningKeyID: "k-active", PreviousKeys: []cell.VerificationKey{
		{KID: "k-recent", PublicKey: make([]byte, 32), RetiredAt: now.Add(-keep + time.Hour)},
		{KID: "k-expired", PublicKey: make([]byte, 32), RetiredAt: now.Add(-keep - time.Hour)},
	}}
	kid := s.RotateSigningKey(now, keep)
	if kid != s.SigningKeyID || !strings.HasPrefix(kid, "k-") || kid == "k-active" || len(s.SigningKeySeed) != ed25519.SeedSize ||
		string(s.SigningKeySeed) == string(seed) {
		t.Fatalf("new key %q seed %x", kid, s.SigningKeySeed)
	}
	var kids []string
	for _, k := range s.PreviousKeys {
		kids = append(kids, k.KID)
	}
	if strings.Join(kids, ",") != "k-active,k-recent" {
		t.Fatalf("previous keys %v, want the retired active key then the recent one (the expired one dropped)", kids)
	}
	if first := s.PreviousKeys[0]; !first.RetiredAt.Equal(now) || !first.PublicKey.Equal(ed25519.NewKeyFromSeed(seed).Public()) {
		t.Fatalf("retired key %+v", first)
	}
}
