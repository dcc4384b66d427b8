package api

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"atende/cell"
	"atende/controlplane"
)

// RoleSuperAdmin is the role every control-plane API call (besides /healthz) requires.
const RoleSuperAdmin = "super-admin"

// TokenTypeAccess is the `typ` claim of access tokens.
const TokenTypeAccess = "access"

// Claims are the JWT claims of a super-admin token (DESIGN.md §4): sub, roles, typ, sid plus the
// registered exp, iat, iss and aud.
type Claims struct {
	TenantID string   `json:"tenantId,omitempty"`
	Roles    []string `json:"roles"`
	Type     string   `json:"typ"`
	Session  string   `json:"sid,omitempty"`
	jwt.RegisteredClaims
}

// IssueSuperAdminToken signs a super-admin access token (EdDSA) for subject with iss
// cell.ControlPlaneIssuer, aud audience (cell.ControlPlaneAudience for this API,
// cell.Audience(tenantID) for one cell, whose tenantId claim is then set too) and exp now+ttl.
func IssueSuperAdminToken(key ed25519.PrivateKey, subject, audience string, ttl time.Duration) (string, error) {
	if len(key) != ed25519.PrivateKeySize {
		return "", errors.New("api: an Ed25519 private key is required to sign tokens")
	}
	now := time.Now()
	sid := make([]byte, 8)
	_, _ = rand.Read(sid)
	claims := Claims{
		Roles: []string{RoleSuperAdmin}, Type: TokenTypeAccess, Session: hex.EncodeToString(sid),
		RegisteredClaims: jwt.RegisteredClaims{
			Subject: subject, Issuer: cell.ControlPlaneIssuer, Audience: jwt.ClaimStrings{audience},
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
	}
	if tenantID, ok := strings.CutPrefix(audience, "cell:"); ok {
		claims.TenantID = tenantID
	}
	return jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims).SignedString(key)
}

// verifyToken checks a bearer token for this API: EdDSA only, signed by key, iss and aud
// "atende-controlplane", exp required and in the future, typ "access". It returns an
// unauthorized *controlplane.Error for any failure and a forbidden one when the token is valid
// but lacks the super-admin role.
func verifyToken(key ed25519.PublicKey, raw string) (*Claims, error) {
	var claims Claims
	_, err := jwt.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return key, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(cell.ControlPlaneIssuer), jwt.WithAudience(cell.ControlPlaneAudience),
		jwt.WithExpirationRequired(), jwt.WithLeeway(5*time.Second))
	if err != nil || claims.Type != TokenTypeAccess {
		return nil, controlplane.Errorf(controlplane.EUnauthorized, "the bearer token is invalid or expired")
	}
	if !slices.Contains(claims.Roles, RoleSuperAdmin) {
		return nil, controlplane.Errorf(controlplane.EForbidden, "a super-admin token is required")
	}
	return &claims, nil
}
