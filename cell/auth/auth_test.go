package auth

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
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

// rotated returns the authority of a cell whose key old (kid "k1") was retired at retiredAt in
// favour of a new key (kid "k2").
func rotated(old ed25519.PrivateKey, cpKey ed25519.PublicKey, retiredAt time.Time) *Authority {
	_, next, _ := ed25519.GenerateKey(nil)
	return NewAuthority("t1", next, "k2", cpKey,
		cell.VerificationKey{KID: "k1", PublicKey: old.Public().(ed25519.PublicKey), RetiredAt: retiredAt})
}

func TestTokensOfAPreviousKeyVerifyAfterRotation(t *testing.T) {
	before, cpKey := newAuthority(t)
	access, _ := before.Issue(Grant{Type: TypeAccess, Subject: "u", TTL: AccessTTL})
	refresh, _ := before.Issue(Grant{Type: TypeRefresh, Subject: "u", TTL: RefreshTTL})
	after := rotated(before.key, cpKey.Public().(ed25519.PublicKey), time.Now())
	if _, err := after.Verify(access.Token, TypeAccess); err != nil {
		t.Fatalf("access token of the previous key refused after rotation: %v", err)
	}
	if _, err := after.Verify(refresh.Token, TypeRefresh); err != nil {
		t.Fatalf("refresh token of the previous key refused after rotation: %v", err)
	}
	fresh, _ := after.Issue(Grant{Type: TypeAccess, Subject: "u", TTL: AccessTTL})
	if kid := headerKid(t, fresh.Token); kid != "k2" {
		t.Fatalf("new token signed with kid %q, want the active k2", kid)
	}
	if _, err := after.Verify(fresh.Token, TypeAccess); err != nil {
		t.Fatal(err)
	}
	// The authority before the rotation does not know the new key.
	if _, err := before.Verify(fresh.Token, TypeAccess); cell.ErrorCode(err) != cell.EUnauthorized {
		t.Fatalf("token of an unknown key: %v", err)
	}
	// Once every token of the retired key has expired, the key is no longer used.
	after.now = func() time.Time { return time.Now().Add(RefreshTTL + RetiredKeyGrace + time.Minute) }
	if _, ok := after.verificationKey("k1"); ok {
		t.Fatal("a key retired longer than RefreshTTL + RetiredKeyGrace ago still verifies")
	}
	if strings.Contains(string(after.JWKS()), `"k1"`) {
		t.Fatal("an expired retired key is still published")
	}
}

func TestKidIsUntrustedInput(t *testing.T) {
	a, _ := newAuthority(t)
	claims := Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: a.Audience(), Audience: jwt.ClaimStrings{a.Audience()},
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Minute))}, TenantID: "t1", Type: TypeAccess}
	for _, kid := range []any{"k2", "", "../k1", `k1"`, "K1", "k1 ", nil, 1, []string{"k1"}} {
		tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
		if kid == nil {
			delete(tok.Header, "kid")
		} else {
			tok.Header["kid"] = kid
		}
		s, _ := tok.SignedString(a.key) // the right key: only the kid is wrong
		if _, err := a.Verify(s, TypeAccess); cell.ErrorCode(err) != cell.EUnauthorized {
			t.Errorf("kid %#v: %v, want unauthorized", kid, err)
		}
	}
}

func TestJWKS(t *testing.T) {
	old, cpKey := newAuthority(t)
	a := rotated(old.key, cpKey.Public().(ed25519.PublicKey), time.Now())
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(a.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	want := map[string]ed25519.PublicKey{"k2": a.key.Public().(ed25519.PublicKey), "k1": old.key.Public().(ed25519.PublicKey)}
	if len(set.Keys) != 2 || set.Keys[0]["kid"] != "k2" || set.Keys[1]["kid"] != "k1" {
		t.Fatalf("JWKS %s: want the active k2, then k1", a.JWKS())
	}
	for _, k := range set.Keys {
		if len(k) != 6 || k["kty"] != "OKP" || k["crv"] != "Ed25519" || k["alg"] != "EdDSA" || k["use"] != "sig" {
			t.Errorf("JWK %v: want exactly kty OKP, crv Ed25519, x, kid, alg EdDSA, use sig", k)
		}
		x, err := base64.RawURLEncoding.DecodeString(k["x"])
		if err != nil || !ed25519.PublicKey(x).Equal(want[k["kid"]]) {
			t.Errorf("JWK %s: x %q is not the unpadded base64url public key (%v)", k["kid"], k["x"], err)
		}
	}
	if strings.Contains(string(a.JWKS()), "\"d\"") {
		t.Fatal("JWKS leaks a private key")
	}
}

func headerKid(t *testing.T, token string) string {
	t.Helper()
	tok, _, err := jwt.NewParser().ParseUnverified(token, &Claims{})
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := tok.Header["kid"].(string)
	return kid
}

// signOwn signs claims with the authority's active key and kid, as the cell itself would.
func signOwn(t *testing.T, a *Authority, claims Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = a.kid
	s, err := tok.SignedString(a.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestImpliedTenantOnlyInCompatMode(t *testing.T) {
	a, cpKey := newAuthority(t)
	exp := jwt.NewNumericDate(time.Now().Add(time.Minute))
	own := func(aud, tenant string) Claims {
		return Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: a.Audience(), Subject: "u1", Audience: jwt.ClaimStrings{aud}, ExpiresAt: exp},
			TenantID: tenant, Roles: []string{cell.RoleAgent}, Type: TypeAccess}
	}
	noTenant := signOwn(t, a, own(a.Audience(), ""))
	foreign := signOwn(t, a, own(a.Audience(), "t2"))
	otherAudience := signOwn(t, a, own(cell.Audience("t2"), ""))
	cpClaims := Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: cell.ControlPlaneIssuer, Subject: "root",
		Audience: jwt.ClaimStrings{a.Audience()}, ExpiresAt: exp}, Type: TypeAccess}
	cpNoTenant, _ := jwt.NewWithClaims(jwt.SigningMethodEdDSA, cpClaims).SignedString(cpKey)

	// Strict (the default): a token without tenantId is refused like a foreign one.
	if _, err := a.Verify(noTenant, TypeAccess); cell.ErrorCode(err) != cell.EForbidden {
		t.Fatalf("strict, no tenantId: %v, want forbidden", err)
	}

	var seen []string
	a.AcceptImpliedTenant(func(c *Claims) { seen = append(seen, c.Subject+"/"+c.TenantID) })
	got, err := a.Verify(noTenant, TypeAccess)
	if err != nil || got.TenantID != "t1" || got.Principal().TenantID != "t1" {
		t.Fatalf("compat, no tenantId: claims %+v, err %v; want accepted as t1", got, err)
	}
	if len(seen) != 1 || seen[0] != "u1/t1" {
		t.Fatalf("observed %v, want one acceptance of u1 as t1", seen)
	}
	for name, tc := range map[string]struct {
		token, code string
	}{
		"another tenant":           {foreign, cell.EForbidden},
		"another audience":         {otherAudience, cell.EUnauthorized},
		"control plane, no tenant": {cpNoTenant, cell.EForbidden},
		"wrong type, no tenant":    {signOwn(t, a, Claims{RegisteredClaims: own(a.Audience(), "").RegisteredClaims, Type: TypeRefresh}), cell.EUnauthorized},
		"forged (other key), no tenant": {func() string {
			_, other, _ := ed25519.GenerateKey(nil)
			tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, own(a.Audience(), ""))
			tok.Header["kid"] = a.kid
			s, _ := tok.SignedString(other)
			return s
		}(), cell.EUnauthorized},
	} {
		if _, err := a.Verify(tc.token, TypeAccess); cell.ErrorCode(err) != tc.code {
			t.Errorf("compat, %s: %v, want %s", name, err, tc.code)
		}
	}
	if len(seen) != 1 {
		t.Fatalf("refused tokens were observed as accepted: %v", seen)
	}
}
