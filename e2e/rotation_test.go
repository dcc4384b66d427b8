package e2e

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// kidOf returns the `kid` of a JWT's header (not verified: the cell does that).
func kidOf(t *testing.T, token string) string {
	t.Helper()
	head, _, _ := strings.Cut(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		t.Fatalf("token header: %v", err)
	}
	var h struct {
		Kid string `json:"kid"`
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(raw, &h); err != nil || h.Alg != "EdDSA" {
		t.Fatalf("token header %s: %v", raw, err)
	}
	return h.Kid
}

// rotatedTenant is the part of the control plane's tenant answer that a rotation changes.
type rotatedTenant struct {
	State        string `json:"state"`
	SigningKeyID string `json:"signingKid"`
	Generation   int64  `json:"generation"`
	Cell         struct {
		Generation int64 `json:"generation"`
	} `json:"cell"`
}

// jwksKids fetches the tenant's JWKS through the edge and returns its kids in order.
func (s *stack) jwksKids(key string) []string {
	s.t.Helper()
	var set struct {
		Keys []struct {
			Kty, Crv, X, Kid, Alg, Use string
		} `json:"keys"`
	}
	if st, body := s.on(key, "GET", "/.well-known/jwks.json", "", nil, &set); st != 200 {
		s.t.Fatalf("JWKS of %s: %d %s", key, st, body)
	}
	var kids []string
	for _, k := range set.Keys {
		if k.Kty != "OKP" || k.Crv != "Ed25519" || k.Alg != "EdDSA" || k.Use != "sig" || len(k.X) != 43 {
			s.t.Fatalf("JWK %+v is not an Ed25519 signing key", k)
		}
		kids = append(kids, k.Kid)
	}
	return kids
}

// TestKeyRotation is issue 4's "rotates keys without logging anyone out": a signed-in admin keeps
// working across two rotations of the cell's signing key (one through the API, one with
// `ctl tenant rotate-keys`), new logins get the new kid, and the JWKS lists every key in use.
func TestKeyRotation(t *testing.T) {
	s := startStack(t)
	tn, _ := s.createTenant("rotor")
	type tokens struct {
		AccessToken  string `json:"accessToken"`
		RefreshToken string `json:"refreshToken"`
	}
	login := func() tokens {
		t.Helper()
		var out tokens
		if st, body := s.on("rotor", "POST", "/api/auth/login", "", map[string]string{"email": tn.Admin.Email, "password": tn.Admin.Password}, &out); st != 200 {
			t.Fatalf("login: %d %s", st, body)
		}
		return out
	}
	old := login()
	oldKid := kidOf(t, old.AccessToken)
	if kids := s.jwksKids("rotor"); !slices.Equal(kids, []string{oldKid}) {
		t.Fatalf("JWKS before rotation %v, want [%s]", kids, oldKid)
	}

	// Rotation 1, through the control-plane API; wait until the cell runs the new key.
	var rotated rotatedTenant
	if st, body := s.cp("POST", "/api/tenants/rotor/rotate-keys", nil, &rotated); st != 202 {
		t.Fatalf("rotate-keys: %d %s", st, body)
	}
	if rotated.State != "live" || rotated.SigningKeyID == "" || rotated.SigningKeyID == oldKid || rotated.Generation != 1 {
		t.Fatalf("rotate-keys answered %+v", rotated)
	}
	begin := time.Now()
	for {
		var got rotatedTenant
		s.cp("GET", "/api/tenants/"+tn.ID, nil, &got)
		if got.State != "live" {
			t.Fatalf("tenant is %s during the rotation, want live", got.State)
		}
		if got.Cell.Generation == rotated.Generation {
			break
		}
		if time.Since(begin) > 30*time.Second {
			t.Fatalf("cell not restarted 30 s after the rotation: %+v", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("cell restarted with %s %s after the 202", rotated.SigningKeyID, time.Since(begin).Round(time.Millisecond))

	t.Run("the old access token still works", func(t *testing.T) {
		if st, body := s.on("rotor", "GET", "/api/auth/me", old.AccessToken, nil, nil); st != 200 {
			t.Fatalf("old access token after rotation: %d %s", st, body)
		}
	})
	t.Run("a new login gets the new kid", func(t *testing.T) {
		fresh := login()
		if kid := kidOf(t, fresh.AccessToken); kid != rotated.SigningKeyID {
			t.Fatalf("new token kid %q, want %q", kid, rotated.SigningKeyID)
		}
		if st, body := s.on("rotor", "GET", "/api/auth/me", fresh.AccessToken, nil, nil); st != 200 {
			t.Fatalf("new access token: %d %s", st, body)
		}
	})
	t.Run("the JWKS lists both kids", func(t *testing.T) {
		if kids := s.jwksKids("rotor"); !slices.Equal(kids, []string{rotated.SigningKeyID, oldKid}) {
			t.Fatalf("JWKS %v, want [%s %s]", kids, rotated.SigningKeyID, oldKid)
		}
	})
	t.Run("the old refresh token still refreshes, with the new key", func(t *testing.T) {
		var next tokens
		if st, body := s.on("rotor", "POST", "/api/auth/refresh", "", map[string]string{"refreshToken": old.RefreshToken}, &next); st != 200 {
			t.Fatalf("refresh with a token of the old key: %d %s", st, body)
		}
		if kid := kidOf(t, next.AccessToken); kid != rotated.SigningKeyID {
			t.Fatalf("refreshed token kid %q, want %q", kid, rotated.SigningKeyID)
		}
	})
	t.Run("a kid naming no key is refused", func(t *testing.T) {
		head, rest, _ := strings.Cut(old.AccessToken, ".")
		raw, _ := base64.RawURLEncoding.DecodeString(head)
		forged := base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(raw), oldKid, "../"+oldKid, 1))) + "." + rest
		if st, body := s.on("rotor", "GET", "/api/auth/me", forged, nil, nil); st != 401 {
			t.Fatalf("token with kid ../%s: %d %s", oldKid, st, body)
		}
	})

	// Rotation 2, with the CLI: it waits until the cell is healthy and prints the new kid.
	t.Run("ctl tenant rotate-keys", func(t *testing.T) {
		ctl := exec.Command(filepath.Join(binDir, "ctl"), "tenant", "rotate-keys", "rotor")
		ctl.Env = append(os.Environ(), "ATENDE_API="+s.api, "ATENDE_TOKEN="+s.token)
		out, err := ctl.CombinedOutput()
		if err != nil {
			t.Fatalf("ctl: %v\n%s", err, out)
		}
		m := regexp.MustCompile(`signs with the new key (k-[a-z2-7]+)`).FindSubmatch(out)
		if m == nil || !strings.Contains(string(out), "healthy in") {
			t.Fatalf("ctl output:\n%s", out)
		}
		third := string(m[1])
		if kids := s.jwksKids("rotor"); !slices.Equal(kids, []string{third, rotated.SigningKeyID, oldKid}) {
			t.Fatalf("JWKS %v, want [%s %s %s]", kids, third, rotated.SigningKeyID, oldKid)
		}
		if kid := kidOf(t, login().AccessToken); kid != third {
			t.Fatalf("login after ctl rotation: kid %q, want %q", kid, third)
		}
		if st, body := s.on("rotor", "GET", "/api/auth/me", old.AccessToken, nil, nil); st != 200 {
			t.Fatalf("first access token after two rotations: %d %s", st, body)
		}
	})
}
