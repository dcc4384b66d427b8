package auth

import (
	"crypto/ed25519"
	"strings"
	"testing"
	"time"

	"atende/cell"

	"github.com/golang-jwt/jwt/v5"
)

func newAuthority(t *testing.T) (*Authority, ed25519.PrivateKey) {
	_, key, _ := ed25519.GenerateKey(nil)
	_, cpKey, _ := ed25519.GenerateKey(nil)
	return NewAuthority("t1", key, "k1", cpKey.Public().(ed25519.PublicKey)), cpKey
}

func TestVerifyAcceptsOnlyTheRequestedType(t *testing.T) {
	a, _ := newAuthority(t)
	for _, typ := range []string{TypeAccess, TypeRefresh, TypeVisitor, TypeWSTicket} {
		tok, err := a.Issue(Grant{Type: typ, Subject: "u", Roles: []string{cell.RoleAgent}, TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{TypeAccess, TypeRefresh, TypeVisitor, TypeWSTicket} {
			_, err := a.Verify(tok.Token, want)
			if (err == nil) != (typ == want) {
				t.Errorf("token %s verified as %s: err %v", typ, want, err)
			}
		}
	}
}

func TestExpiredTokenIsRefused(t *testing.T) {
	a, _ := newAuthority(t)
	a.now = func() time.Time { return time.Now().Add(-time.Hour) }
	tok, _ := a.Issue(Grant{Type: TypeAccess, Subject: "u", TTL: time.Minute})
	a.now = time.Now
	if _, err := a.Verify(tok.Token, TypeAccess); cell.ErrorCode(err) != cell.EUnauthorized {
		t.Fatalf("expired token: %v", err)
	}
}

func TestControlPlaneTokensOnlyGrantSuperAdmin(t *testing.T) {
	a, cpKey := newAuthority(t)
	claims := Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: cell.ControlPlaneIssuer, Subject: "root",
		Audience: jwt.ClaimStrings{a.Audience()}, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Minute))},
		TenantID: "t1", Roles: []string{cell.RoleTenantAdmin, cell.RoleAgent}, Type: TypeAccess}
	tok, _ := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims).SignedString(cpKey)
	got, err := a.Verify(tok, TypeAccess)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Roles) != 1 || got.Roles[0] != cell.RoleSuperAdmin {
		t.Fatalf("roles %v, want only super-admin", got.Roles)
	}
	// Signed with the control-plane key but claiming the cell as issuer: refused.
	claims.Issuer = a.Audience()
	forged, _ := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims).SignedString(cpKey)
	if _, err := a.Verify(forged, TypeAccess); err == nil {
		t.Fatal("control-plane key accepted for the cell's own issuer")
	}
}

func TestHMACWithPublicKeyIsRefused(t *testing.T) {
	a, _ := newAuthority(t)
	claims := Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: a.Audience(), Audience: jwt.ClaimStrings{a.Audience()},
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Minute))}, TenantID: "t1", Type: TypeAccess}
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	tok.Header["kid"] = "k1"
	s, _ := tok.SignedString([]byte(a.key.Public().(ed25519.PublicKey)))
	if _, err := a.Verify(s, TypeAccess); err == nil {
		t.Fatal("HS256 token signed with the public key was accepted")
	}
}

func TestPasswords(t *testing.T) {
	h, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !CheckPassword(h, "correct horse") || CheckPassword(h, "wrong") {
		t.Fatal("password check is wrong")
	}
	if _, err := HashPassword(strings.Repeat("x", 73)); cell.ErrorCode(err) != cell.EInvalid {
		t.Fatalf("73-byte password: %v", err)
	}
	p := RandomPassword(20)
	if len(p) != 20 || RandomPassword(20) == p {
		t.Fatalf("random password %q", p)
	}
}
