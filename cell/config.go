package cell

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Environment variable names of a cell's configuration. The control plane (any driver) starts a
// cell with exactly these variables; the cell reads them once in main.
const (
	EnvTenantID           = "ATENDE_CELL_TENANT_ID"
	EnvTenantKey          = "ATENDE_CELL_TENANT_KEY"
	EnvTenantName         = "ATENDE_CELL_TENANT_NAME"
	EnvListenAddr         = "ATENDE_CELL_ADDR"
	EnvHosts              = "ATENDE_CELL_HOSTS"
	EnvPublicURL          = "ATENDE_CELL_PUBLIC_URL"
	EnvAllowedOrigins     = "ATENDE_CELL_ALLOWED_ORIGINS"
	EnvMongoURI           = "ATENDE_CELL_MONGO_URI"
	EnvDatabase           = "ATENDE_CELL_DATABASE"
	EnvS3Endpoint         = "ATENDE_CELL_S3_ENDPOINT"
	EnvS3PublicEndpoint   = "ATENDE_CELL_S3_PUBLIC_ENDPOINT"
	EnvS3Region           = "ATENDE_CELL_S3_REGION"
	EnvS3Bucket           = "ATENDE_CELL_S3_BUCKET"
	EnvS3Prefix           = "ATENDE_CELL_S3_PREFIX"
	EnvS3AccessKey        = "ATENDE_CELL_S3_ACCESS_KEY"
	EnvS3SecretKey        = "ATENDE_CELL_S3_SECRET_KEY"
	EnvSigningKey         = "ATENDE_CELL_SIGNING_KEY"
	EnvSigningKeyID       = "ATENDE_CELL_SIGNING_KID"
	EnvPreviousKeys       = "ATENDE_CELL_PREVIOUS_KEYS"
	EnvControlPlaneKey    = "ATENDE_CELL_CONTROLPLANE_KEY"
	EnvBootstrapUsers     = "ATENDE_CELL_BOOTSTRAP_USERS"
	EnvPresignTTL         = "ATENDE_CELL_PRESIGN_TTL"
	EnvMaxUploadBytes     = "ATENDE_CELL_MAX_UPLOAD_BYTES"
	EnvMaxAgents          = "ATENDE_CELL_MAX_AGENTS"
	EnvMaxOpenChats       = "ATENDE_CELL_MAX_OPEN_CHATS"
	EnvTenantRates        = "ATENDE_CELL_TENANT_RATES"
	EnvWebhookPrivate     = "ATENDE_CELL_WEBHOOK_ALLOW_PRIVATE"
	EnvUploadContentTypes = "ATENDE_CELL_UPLOAD_TYPES"
	EnvLogLevel           = "ATENDE_CELL_LOG_LEVEL"
	EnvTrustedProxies     = "ATENDE_CELL_TRUSTED_PROXIES"
	EnvTenancy            = "ATENDE_CELL_TENANCY"
)

// Tenancy modes of a cell (Config.Tenancy, EnvTenancy).
const (
	// TenancyStrict, the default, refuses every request without the tenant context: a Host that
	// is not one of Config.Hosts (421 misdirected) and a token without the cell's tenantId claim
	// (403 forbidden), besides a token for another audience (401). DESIGN.md §4.
	TenancyStrict = "strict"
	// TenancyCompat serves the clients of a tenant migrated from the single-tenant app while they
	// switch over (issue 5): a request whose Host is not the tenant's host is accepted unless the
	// Host is another tenant's subdomain of the platform domain, and a token this cell signed
	// (its issuer and audience) without a tenantId claim is accepted with the cell's tenant
	// implied, and a WebSocket may open from a page of such a Host itself (same origin). A token
	// naming another tenant, another audience or issuer is still refused. Every
	// such acceptance is counted (atende_cell_compat_accepted_total) and logged, so operators see
	// when it is safe to switch back to strict.
	TenancyCompat = "compat"
)

// TenantRates are a tenant's budgets per minute, shared by all its clients (0 = unlimited):
// what one tenant can make its cell do, whatever addresses the requests come from, so a flood
// on one tenant's widget cannot exhaust the shared database for the others.
type TenantRates struct {
	Logins          int `json:"logins"`
	VisitorSessions int `json:"visitorSessions"`
	ChatCreates     int `json:"chatCreates"`
	Uploads         int `json:"uploads"`
	Messages        int `json:"messages"`
}

// Token issuers and audiences. A cell issues and accepts tokens whose `iss` and `aud` are both
// Audience(tenantID); the control plane issues super-admin tokens with iss ControlPlaneIssuer and,
// for a cell, aud Audience(tenantID).
const (
	// ControlPlaneIssuer is the `iss` of every token the control plane signs.
	ControlPlaneIssuer = "atende-controlplane"
	// ControlPlaneAudience is the `aud` of super-admin tokens for the control-plane API itself.
	ControlPlaneAudience = "atende-controlplane"
)

// Audience returns the token audience (and issuer) of the cell serving tenantID: "cell:<tenantId>".
func Audience(tenantID string) string { return "cell:" + tenantID }

// MaxPresignTTL is the longest lifetime of a presigned attachment URL (DESIGN.md §7: TTL ≤ 5 min).
const MaxPresignTTL = 5 * time.Minute

// DefaultUploadContentTypes is the attachment content-type allow-list when a tenant sets none.
var DefaultUploadContentTypes = []string{"image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain"}

// BootstrapUser is a user the cell creates at start if no user with that email exists yet (an
// insert against the unique email index, so a restart never overwrites a changed password).
// PasswordHash is a bcrypt hash (golang.org/x/crypto/bcrypt); Roles are "tenant-admin" and/or
// "agent".
type BootstrapUser struct {
	Email        string   `json:"email"`
	Name         string   `json:"name"`
	Roles        []string `json:"roles"`
	PasswordHash string   `json:"passwordHash"`
}

// VerificationKey is a retired signing key of the cell: it no longer signs, but tokens it signed
// before its retirement keep verifying (and it stays in the cell's JWKS) until the longest of them
// has expired, so a key rotation logs nobody out. In EnvPreviousKeys it is the JSON object
// {"kid":"…","publicKey":"<base64 of the 32-byte Ed25519 public key>","retiredAt":"<RFC 3339>"}.
type VerificationKey struct {
	// KID is the key's JWT `kid`.
	KID string `json:"kid"`
	// PublicKey is the 32-byte Ed25519 public key (RFC 8032).
	PublicKey ed25519.PublicKey `json:"publicKey"`
	// RetiredAt is when the key stopped signing (UTC).
	RetiredAt time.Time `json:"retiredAt"`
}

// Config is everything a cell process needs to serve one tenant. It travels as environment
// variables (Environ / ConfigFromEnv), so the process and docker drivers start cells the same way.
type Config struct {
	// TenantID is the tenant's immutable random id; TenantKey its subdomain slug.
	TenantID, TenantKey, TenantName string
	// ListenAddr is the cell's HTTP listen address, e.g. "127.0.0.1:41234".
	ListenAddr string
	// Hosts are the host names (without port) the cell answers for, e.g. ["acme.localhost"].
	// Any other Host gets 421 misdirected.
	Hosts []string
	// PublicURL is the tenant's base URL as browsers see it, e.g. "http://acme.localhost:8080".
	PublicURL string
	// AllowedOrigins are extra exact origins (scheme://host[:port]) allowed to embed the widget and
	// open WebSockets, besides the origin of PublicURL.
	AllowedOrigins []string
	// MongoURI and Database locate the tenant's database ("t_<tenantId>").
	MongoURI, Database string
	// S3Endpoint is the S3 API base URL the cell uses; S3PublicEndpoint the one written into
	// presigned URLs handed to browsers (defaults to S3Endpoint).
	S3Endpoint, S3PublicEndpoint string
	// S3Region, S3Bucket and S3Prefix ("t/<tenantId>/") locate the tenant's objects.
	S3Region, S3Bucket, S3Prefix string
	// S3AccessKey and S3SecretKey are the credentials the cell signs S3 requests with.
	S3AccessKey, S3SecretKey string
	// SigningKey signs the tenant's tokens (Ed25519, RFC 8032); SigningKeyID is its JWT `kid`.
	SigningKey   ed25519.PrivateKey
	SigningKeyID string
	// PreviousKeys are retired signing keys that still verify the tokens they signed (see
	// VerificationKey); their kids differ from SigningKeyID and from each other.
	PreviousKeys []VerificationKey
	// ControlPlaneKey verifies super-admin tokens issued by the control plane.
	ControlPlaneKey ed25519.PublicKey
	// BootstrapUsers are created at start when missing (see BootstrapUser).
	BootstrapUsers []BootstrapUser
	// PresignTTL is the lifetime of presigned attachment URLs, at most MaxPresignTTL.
	PresignTTL time.Duration
	// MaxUploadBytes is the largest attachment accepted, in bytes.
	MaxUploadBytes int64
	// MaxAgents is the most users (agents and tenant-admins) the tenant's plan allows; 0 means no
	// limit.
	MaxAgents int
	// MaxOpenChats is the most open (queued or active) chats the plan allows at once; 0 means no
	// limit. Counted per cell process (a soft limit with replicas).
	MaxOpenChats int
	// TenantRates are the plan's tenant-wide request budgets, on top of the per-IP limits.
	TenantRates TenantRates
	// WebhookAllowPrivate lets webhooks reach loopback and private addresses (development and
	// tests only; off by default against SSRF).
	WebhookAllowPrivate bool
	// UploadContentTypes is the attachment content-type allow-list.
	UploadContentTypes []string
	// LogLevel is "debug", "info", "warn" or "error".
	LogLevel string
	// TrustedProxies are the IP addresses and CIDR ranges (e.g. "10.0.0.0/16") of the proxies in
	// front of the cell whose X-Forwarded-For it believes, besides the loopback it always trusts:
	// Traefik's network in a compose deployment, so rate limits and audit entries see each
	// client's address rather than Traefik's. Empty: the loopback only.
	TrustedProxies []string
	// Tenancy is TenancyStrict (the default when empty) or TenancyCompat.
	Tenancy string
}

// Environ returns the configuration as "NAME=value" entries for a child process or container.
// Keys are base64 (standard encoding): the 32-byte Ed25519 seed and the 32-byte public key.
func (c Config) Environ() []string {
	users, _ := json.Marshal(c.BootstrapUsers)
	rates, _ := json.Marshal(c.TenantRates)
	var previous string
	if len(c.PreviousKeys) > 0 {
		b, _ := json.Marshal(c.PreviousKeys)
		previous = string(b)
	}
	var seed, pub string
	if len(c.SigningKey) == ed25519.PrivateKeySize {
		seed = base64.StdEncoding.EncodeToString(c.SigningKey.Seed())
	}
	if len(c.ControlPlaneKey) == ed25519.PublicKeySize {
		pub = base64.StdEncoding.EncodeToString(c.ControlPlaneKey)
	}
	kv := [][2]string{
		{EnvTenantID, c.TenantID}, {EnvTenantKey, c.TenantKey}, {EnvTenantName, c.TenantName},
		{EnvListenAddr, c.ListenAddr}, {EnvHosts, strings.Join(c.Hosts, ",")},
		{EnvPublicURL, c.PublicURL}, {EnvAllowedOrigins, strings.Join(c.AllowedOrigins, ",")},
		{EnvMongoURI, c.MongoURI}, {EnvDatabase, c.Database},
		{EnvS3Endpoint, c.S3Endpoint}, {EnvS3PublicEndpoint, c.S3PublicEndpoint},
		{EnvS3Region, c.S3Region}, {EnvS3Bucket, c.S3Bucket}, {EnvS3Prefix, c.S3Prefix},
		{EnvS3AccessKey, c.S3AccessKey}, {EnvS3SecretKey, c.S3SecretKey},
		{EnvSigningKey, seed}, {EnvSigningKeyID, c.SigningKeyID}, {EnvPreviousKeys, previous},
		{EnvControlPlaneKey, pub},
		{EnvBootstrapUsers, string(users)}, {EnvPresignTTL, c.PresignTTL.String()},
		{EnvMaxUploadBytes, strconv.FormatInt(c.MaxUploadBytes, 10)}, {EnvMaxAgents, strconv.Itoa(c.MaxAgents)},
		{EnvMaxOpenChats, strconv.Itoa(c.MaxOpenChats)}, {EnvTenantRates, string(rates)},
		{EnvWebhookPrivate, strconv.FormatBool(c.WebhookAllowPrivate)},
		{EnvUploadContentTypes, strings.Join(c.UploadContentTypes, ",")}, {EnvLogLevel, c.LogLevel},
		{EnvTrustedProxies, strings.Join(c.TrustedProxies, ",")},
		{EnvTenancy, c.Tenancy},
	}
	out := make([]string, 0, len(kv))
	for _, p := range kv {
		out = append(out, p[0]+"="+p[1])
	}
	return out
}

// ConfigFromEnv reads and validates a cell configuration through getenv (os.Getenv in main).
// Defaults: S3PublicEndpoint = S3Endpoint, S3Region "us-east-1", PresignTTL 5m, MaxUploadBytes
// 10 MiB, UploadContentTypes DefaultUploadContentTypes, LogLevel "info", Tenancy TenancyStrict
// (any value other than "strict" or "compat" is an error). It returns an error naming every
// missing or malformed variable.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	var errs []error
	req := func(name string) string {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			errs = append(errs, fmt.Errorf("%s is required", name))
		}
		return v
	}
	list := func(name string) []string {
		var out []string
		for _, p := range strings.Split(getenv(name), ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		return out
	}
	c := Config{
		TenantID: req(EnvTenantID), TenantKey: req(EnvTenantKey), TenantName: getenv(EnvTenantName),
		ListenAddr: req(EnvListenAddr), Hosts: list(EnvHosts), PublicURL: req(EnvPublicURL),
		AllowedOrigins: list(EnvAllowedOrigins), MongoURI: req(EnvMongoURI), Database: req(EnvDatabase),
		S3Endpoint: req(EnvS3Endpoint), S3PublicEndpoint: getenv(EnvS3PublicEndpoint),
		S3Region: getenv(EnvS3Region), S3Bucket: req(EnvS3Bucket), S3Prefix: req(EnvS3Prefix),
		S3AccessKey: req(EnvS3AccessKey), S3SecretKey: req(EnvS3SecretKey),
		SigningKeyID: req(EnvSigningKeyID), UploadContentTypes: list(EnvUploadContentTypes),
		LogLevel: getenv(EnvLogLevel), TrustedProxies: list(EnvTrustedProxies), Tenancy: strings.ToLower(strings.TrimSpace(getenv(EnvTenancy))),
	}
	if len(c.Hosts) == 0 {
		errs = append(errs, fmt.Errorf("%s is required", EnvHosts))
	}
	if _, _, err := net.SplitHostPort(c.ListenAddr); c.ListenAddr != "" && err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", EnvListenAddr, err))
	}
	if seed, err := base64.StdEncoding.DecodeString(req(EnvSigningKey)); err != nil || len(seed) != ed25519.SeedSize {
		errs = append(errs, fmt.Errorf("%s must be a base64 32-byte Ed25519 seed", EnvSigningKey))
	} else {
		c.SigningKey = ed25519.NewKeyFromSeed(seed)
	}
	if pub, err := base64.StdEncoding.DecodeString(req(EnvControlPlaneKey)); err != nil || len(pub) != ed25519.PublicKeySize {
		errs = append(errs, fmt.Errorf("%s must be a base64 32-byte Ed25519 public key", EnvControlPlaneKey))
	} else {
		c.ControlPlaneKey = ed25519.PublicKey(pub)
	}
	if raw := strings.TrimSpace(getenv(EnvPreviousKeys)); raw != "" && raw != "null" {
		if err := json.Unmarshal([]byte(raw), &c.PreviousKeys); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", EnvPreviousKeys, err))
		}
		seen := map[string]bool{c.SigningKeyID: true}
		for i, k := range c.PreviousKeys {
			if k.KID == "" || seen[k.KID] || len(k.PublicKey) != ed25519.PublicKeySize {
				errs = append(errs, fmt.Errorf("%s: key %d needs a kid of its own and a 32-byte public key", EnvPreviousKeys, i))
			}
			seen[k.KID] = true
			c.PreviousKeys[i].RetiredAt = k.RetiredAt.UTC()
		}
	}
	if raw := strings.TrimSpace(getenv(EnvBootstrapUsers)); raw != "" && raw != "null" {
		if err := json.Unmarshal([]byte(raw), &c.BootstrapUsers); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", EnvBootstrapUsers, err))
		}
	}
	c.PresignTTL = MaxPresignTTL
	if v := getenv(EnvPresignTTL); v != "" && v != "0s" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > MaxPresignTTL {
			errs = append(errs, fmt.Errorf("%s must be a duration in (0, 5m]", EnvPresignTTL))
		}
		c.PresignTTL = d
	}
	c.MaxUploadBytes = 10 << 20
	if v := getenv(EnvMaxUploadBytes); v != "" && v != "0" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			errs = append(errs, fmt.Errorf("%s must be a positive number of bytes", EnvMaxUploadBytes))
		}
		c.MaxUploadBytes = n
	}
	if v := getenv(EnvMaxAgents); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("%s must be a number ≥ 0", EnvMaxAgents))
		}
		c.MaxAgents = n
	}
	if v := getenv(EnvWebhookPrivate); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s must be true or false", EnvWebhookPrivate))
		}
		c.WebhookAllowPrivate = b
	}
	if v := getenv(EnvMaxOpenChats); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("%s must be a number ≥ 0", EnvMaxOpenChats))
		}
		c.MaxOpenChats = n
	}
	if raw := strings.TrimSpace(getenv(EnvTenantRates)); raw != "" {
		if err := json.Unmarshal([]byte(raw), &c.TenantRates); err != nil {
			errs = append(errs, fmt.Errorf("%s must be a JSON object of per-minute budgets: %v", EnvTenantRates, err))
		}
		r := c.TenantRates
		if r.Logins < 0 || r.VisitorSessions < 0 || r.ChatCreates < 0 || r.Uploads < 0 || r.Messages < 0 {
			errs = append(errs, fmt.Errorf("%s budgets must be ≥ 0", EnvTenantRates))
		}
	}
	switch c.Tenancy {
	case "":
		c.Tenancy = TenancyStrict
	case TenancyStrict, TenancyCompat:
	default:
		errs = append(errs, fmt.Errorf("%s must be %s or %s, not %q", EnvTenancy, TenancyStrict, TenancyCompat, c.Tenancy))
	}
	for _, p := range c.TrustedProxies {
		if err := CheckTrustedProxy(p); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", EnvTrustedProxies, err))
		}
	}
	if c.S3PublicEndpoint == "" {
		c.S3PublicEndpoint = c.S3Endpoint
	}
	if c.S3Region == "" {
		c.S3Region = "us-east-1"
	}
	if len(c.UploadContentTypes) == 0 {
		c.UploadContentTypes = DefaultUploadContentTypes
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	return c, errors.Join(errs...)
}

// CheckTrustedProxy returns an error unless p is an IP address or a CIDR range (net.ParseIP,
// net.ParseCIDR), the forms a cell accepts in TrustedProxies.
func CheckTrustedProxy(p string) error {
	if net.ParseIP(p) != nil {
		return nil
	}
	if _, _, err := net.ParseCIDR(p); err != nil {
		return fmt.Errorf("%q is neither an IP address nor a CIDR range", p)
	}
	return nil
}
