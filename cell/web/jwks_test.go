package web_test

import (
	"crypto/ed25519"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"atende/cell"
	"atende/cell/auth"
	"atende/cell/web"

	"github.com/golang-jwt/jwt/v5"
)

// TestJWKSAndPreviousKeys: the cell publishes its active and previous keys, and a token signed by
// a previous key (before a rotation) is still accepted.
func TestJWKSAndPreviousKeys(t *testing.T) {
	_, oldKey, _ := ed25519.GenerateKey(nil)
	tc := startCell(t, func(c *cell.Config) {
		c.PreviousKeys = []cell.VerificationKey{{KID: "k0", PublicKey: oldKey.Public().(ed25519.PublicKey), RetiredAt: time.Now().Add(-time.Hour)}}
	})
	req, _ := http.NewRequest("GET", tc.base+web.JWKSPath, nil)
	req.Host = "acme.localhost:8080"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var set struct {
		Keys []struct{ Kid, Kty string } `json:"keys"`
	}
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "public, max-age=300" || json.Unmarshal(data, &set) != nil ||
		len(set.Keys) != 2 || set.Keys[0].Kid != "k1" || set.Keys[1].Kid != "k0" || set.Keys[0].Kty != "OKP" {
		t.Fatalf("JWKS: %d %v %s", resp.StatusCode, resp.Header, data)
	}

	claims := auth.Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: cell.Audience(tc.cfg.TenantID), Subject: "agent-1",
		Audience: jwt.ClaimStrings{cell.Audience(tc.cfg.TenantID)}, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
		IssuedAt: jwt.NewNumericDate(time.Now().Add(-2 * time.Hour))},
		TenantID: tc.cfg.TenantID, Roles: []string{cell.RoleAgent}, Type: auth.TypeAccess}
	for kid, want := range map[string]int{"k0": 200, "k9": 401} {
		tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
		tok.Header["kid"] = kid
		s, _ := tok.SignedString(oldKey)
		if st := tc.do("GET", "/api/chat/queue", s, nil, nil); st != want {
			t.Errorf("token of the previous key with kid %s: %d, want %d", kid, st, want)
		}
	}
}
