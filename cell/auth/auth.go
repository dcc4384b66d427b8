// Package auth issues and verifies a cell's tokens (golang-jwt v5, EdDSA/Ed25519 per RFC 8037)
// and hashes passwords (bcrypt from golang.org/x/crypto).
//
// Verification pins the algorithm to EdDSA, requires `exp`, checks `iss` and `aud`, distinguishes
// token types by the `typ` claim so none can stand in for another, and checks the `tenantId`
// claim against the cell's tenant. The `kid` header is untrusted input: it is only ever looked up
// in the map of the cell's own keys (the active one and the retired ones that still verify). A
// token whose issuer is the control plane is verified with the
// control plane's public key and only ever grants the super-admin role.
package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"

	"atende/cell"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"
)

// Token types (the `typ` claim).
const (
	TypeAccess   = "access"
	TypeRefresh  = "refresh"
	TypeVisitor  = "visitor"
	TypeWSTicket = "ws-ticket"
)

// Token lifetimes.
const (
	// AccessTTL is the lifetime of an agent/admin access token.
	AccessTTL = 15 * time.Minute
	// RefreshTTL is the lifetime of a refresh token (and of its session family).
	RefreshTTL = 30 * 24 * time.Hour
	// VisitorTTL is the lifetime of a visitor token issued to the widget.
	VisitorTTL = 24 * time.Hour
	// WSTicketTTL is the lifetime of a single-use WebSocket ticket.
	WSTicketTTL = 30 * time.Second
	// RetiredKeyGrace is how long, beyond RefreshTTL, a retired signing key keeps verifying: it
	// covers the tokens the cell still signed with that key between its retirement (recorded by
	// the control plane) and the cell's restart with the new key.
	RetiredKeyGrace = time.Hour
)

// Claims are the claims of every Atende token.
type Claims struct {
	jwt.RegisteredClaims
	TenantID string   `json:"tenantId"`
	Roles    []string `json:"roles"`
	Type     string   `json:"typ"`
	Name     string   `json:"name,omitempty"`
	Sid      string   `json:"sid,omitempty"`
}

// Principal returns the caller described by the claims.
func (c *Claims) Principal() cell.Principal {
	return cell.Principal{Subject: c.Subject, TenantID: c.TenantID, Roles: c.Roles, Name: c.Name, SessionID: c.Sid}
}

// Authority signs and verifies the tokens of one cell.
type Authority struct {
	tenantID string
	audience string
	key      ed25519.PrivateKey
	kid      string
	// keys are the verification keys of the cell's own tokens by kid: the active key and the
	// previous ones. The order of JWKS is kids.
	keys  map[string]cell.VerificationKey
	kids  []string
	cpKey ed25519.PublicKey
	now   func() time.Time
	// impliedTenant, when set (compat tenancy, see AcceptImpliedTenant), is called for every
	// token of the cell's own issuer accepted without a tenantId claim.
	impliedTenant func(*Claims)
}

// AcceptImpliedTenant puts the authority in the compat tenancy mode of cell.TenancyCompat: a
// token that passes every other check (signature by one of the cell's own keys, issuer and
// audience the cell's own, expiry, type) but carries no tenantId claim is accepted as the cell's
// tenant's, its TenantID set to it, and observe (if not nil) is called with its claims so the
// acceptance can be counted and logged. A token naming another tenant is still refused
// (forbidden), as is one the control plane signed without a tenantId. It must be called before
// the authority is used concurrently; strict mode (the default) is never changed back by it.
func (a *Authority) AcceptImpliedTenant(observe func(*Claims)) {
	if observe == nil {
		observe = func(*Claims) {}
	}
	a.impliedTenant = observe
}

// NewAuthority returns the authority of the cell serving tenantID: it signs with key (JWT header
// `kid` = kid), verifies its own tokens with key or, for tokens whose `kid` names one of
// previous, with that retired key (until RefreshTTL + RetiredKeyGrace after its retirement), and
// accepts the control plane's super-admin tokens signed with cpKey. A previous key with the active
// kid, or with a kid already seen, is ignored.
func NewAuthority(tenantID string, key ed25519.PrivateKey, kid string, cpKey ed25519.PublicKey, previous ...cell.VerificationKey) *Authority {
	a := &Authority{tenantID: tenantID, audience: cell.Audience(tenantID), key: key, kid: kid, cpKey: cpKey, now: time.Now,
		keys: map[string]cell.VerificationKey{}}
	if pub, ok := key.Public().(ed25519.PublicKey); ok && len(key) == ed25519.PrivateKeySize {
		a.keys[kid] = cell.VerificationKey{KID: kid, PublicKey: pub}
		a.kids = append(a.kids, kid)
	}
	for _, k := range previous {
		if _, dup := a.keys[k.KID]; dup || len(k.PublicKey) != ed25519.PublicKeySize {
			continue
		}
		a.keys[k.KID] = k
		a.kids = append(a.kids, k.KID)
	}
	return a
}

// verificationKey returns the key named by kid if it may verify a token now: the active key, or a
// previous key retired less than RefreshTTL + RetiredKeyGrace ago.
func (a *Authority) verificationKey(kid string) (ed25519.PublicKey, bool) {
	k, ok := a.keys[kid]
	if !ok {
		return nil, false
	}
	if kid != a.kid && !k.RetiredAt.IsZero() && a.now().After(k.RetiredAt.Add(RefreshTTL+RetiredKeyGrace)) {
		return nil, false
	}
	return k.PublicKey, true
}

// JWK is one public key of a JWK Set (RFC 7517 §4) in the OKP form of RFC 8037 §2.
type JWK struct {
	// Kty is "OKP" and Crv "Ed25519" (RFC 8037 §2).
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	// X is the public key, base64url without padding.
	X string `json:"x"`
	// Kid is the key id that token headers name.
	Kid string `json:"kid"`
	// Alg is "EdDSA" and Use "sig": the key only verifies signatures.
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// JWKS returns the cell's JWK Set (RFC 7517 §5) as JSON, {"keys":[…]}: the active signing key
// first, then the previous keys that still verify tokens.
func (a *Authority) JWKS() []byte {
	set := struct {
		Keys []JWK `json:"keys"`
	}{Keys: []JWK{}}
	for _, kid := range a.kids {
		if pub, ok := a.verificationKey(kid); ok {
			set.Keys = append(set.Keys, JWK{Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(pub), Kid: kid, Alg: "EdDSA", Use: "sig"})
		}
	}
	b, _ := json.Marshal(set) // strings only: cannot fail
	return b
}

// Audience returns the `aud` (and `iss`) of this cell's tokens.
func (a *Authority) Audience() string { return a.audience }

// Grant describes a token to issue.
type Grant struct {
	Type    string
	Subject string
	Roles   []string
	Name    string
	Sid     string
	TTL     time.Duration
}

// Issued is a signed token with its id (`jti`) and expiry.
type Issued struct {
	Token     string
	JTI       string
	ExpiresAt time.Time
}

// Issue signs a token for g. It returns an error only if signing fails.
func (a *Authority) Issue(g Grant) (Issued, error) {
	now := a.now()
	jti := RandomID()
	exp := now.Add(g.TTL)
	claims := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: a.audience, Subject: g.Subject, Audience: jwt.ClaimStrings{a.audience},
			ExpiresAt: jwt.NewNumericDate(exp), IssuedAt: jwt.NewNumericDate(now), ID: jti,
		},
		TenantID: a.tenantID, Roles: g.Roles, Type: g.Type, Name: g.Name, Sid: g.Sid,
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = a.kid
	s, err := tok.SignedString(a.key)
	if err != nil {
		return Issued{}, err
	}
	return Issued{Token: s, JTI: jti, ExpiresAt: exp}, nil
}

// Verify parses and checks token and returns its claims. The token's `typ` must be one of types.
// Errors are *cell.Error: unauthorized for a malformed, forged, expired, wrong-audience,
// wrong-issuer or wrong-type token; forbidden for a valid token whose tenantId is another tenant's
// or missing (in compat mode a token of the cell's own issuer without tenantId is accepted
// instead, see AcceptImpliedTenant).
func (a *Authority) Verify(token string, types ...string) (*Claims, error) {
	var claims Claims
	_, err := jwt.ParseWithClaims(token, &claims, a.keyFor,
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithAudience(a.audience),
		jwt.WithTimeFunc(a.now),
		jwt.WithLeeway(5*time.Second),
	)
	if err != nil {
		return nil, cell.Errorf(cell.EUnauthorized, "invalid token")
	}
	implied := false
	if claims.TenantID == "" && a.impliedTenant != nil && claims.Issuer == a.audience {
		claims.TenantID, implied = a.tenantID, true
	}
	if claims.TenantID != a.tenantID {
		return nil, cell.Errorf(cell.EForbidden, "token belongs to another tenant")
	}
	if claims.Issuer == cell.ControlPlaneIssuer {
		// The control plane may only grant super-admin, whatever else the token says.
		claims.Roles = []string{cell.RoleSuperAdmin}
	}
	for _, t := range types {
		if claims.Type == t {
			if implied {
				a.impliedTenant(&claims)
			}
			return &claims, nil
		}
	}
	return nil, cell.Errorf(cell.EUnauthorized, "wrong token type")
}

// keyFor selects the verification key from the (untrusted) issuer and kid: for the cell's own
// issuer, the key the kid names in the map of the cell's keys (the kid is never used otherwise);
// the control plane key for the control plane issuer; nothing else.
func (a *Authority) keyFor(t *jwt.Token) (any, error) {
	claims, ok := t.Claims.(*Claims)
	if !ok {
		return nil, errors.New("unexpected claims")
	}
	switch claims.Issuer {
	case a.audience:
		kid, _ := t.Header["kid"].(string)
		pub, ok := a.verificationKey(kid)
		if !ok {
			return nil, errors.New("unknown kid")
		}
		return pub, nil
	case cell.ControlPlaneIssuer:
		if len(a.cpKey) == 0 {
			return nil, errors.New("no control plane key")
		}
		return a.cpKey, nil
	default:
		return nil, errors.New("unknown issuer")
	}
}

// HashPassword returns the bcrypt hash of password at bcrypt.DefaultCost. It returns an invalid
// error for passwords over 72 bytes, which bcrypt cannot hash.
func HashPassword(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return "", cell.Errorf(cell.EInvalid, "password cannot be hashed: %v", err)
	}
	return string(h), nil
}

// CheckPassword reports whether password matches the bcrypt hash.
func CheckPassword(hash, password string) bool {
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
}

// dummyHash is compared against when a login names an unknown email, so that unknown and known
// emails take the same time (OWASP Authentication Cheat Sheet, "Authentication Responses").
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("atende-dummy-password"), bcrypt.DefaultCost)

// BurnPasswordCheck spends the time of one password check and returns false.
func BurnPasswordCheck(password string) bool {
	_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
	return false
}

// RandomID returns 16 random bytes as 32 lowercase hex characters.
func RandomID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms (Go 1.24+ documents this).
	}
	return hex.EncodeToString(b[:])
}

// RandomPassword returns a random password of n characters from an unambiguous alphabet.
func RandomPassword(n int) string {
	const alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	out := make([]byte, 0, n)
	var buf [64]byte
	for len(out) < n {
		if _, err := rand.Read(buf[:]); err != nil {
			panic(err)
		}
		for _, c := range buf {
			// Rejection sampling keeps every character equally likely (no modulo bias).
			if int(c) < 256/len(alphabet)*len(alphabet) && len(out) < n {
				out = append(out, alphabet[int(c)%len(alphabet)])
			}
		}
	}
	return string(out)
}
