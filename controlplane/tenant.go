// Package controlplane is the vocabulary of Atende's control plane: tenants, their lifecycle
// states and legal transitions, lifecycle events, cells, the error type, and the interfaces of the
// registry store and of cell drivers. Implementations live in sub-packages, one technology or role
// each: mongodb (registry store), process (cell driver), supervisor (reconciler and tenant
// service), api (super-admin HTTP API and client), platformhook (lifecycle webhooks to the
// platform URL).
package controlplane

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base32"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"atende/cell"
)

// Tenant is one customer company registered on the platform. ID is immutable and never reused;
// Key is the subdomain slug, unique among tenants that are not deleted.
type Tenant struct {
	// ID is the tenant's random URL-safe id (see NewTenantID).
	ID string `json:"id"`
	// Key is the subdomain slug (see ValidateKey), e.g. "acme" for acme.<domain>.
	Key string `json:"key"`
	// Name is the display name, e.g. "Acme Inc.".
	Name string `json:"name"`
	// State is the lifecycle state; StateReason explains the last change (e.g. a failure).
	State       State  `json:"state"`
	StateReason string `json:"stateReason,omitempty"`
	// AllowedOrigins are extra exact origins (scheme://host[:port]) that may embed the widget.
	AllowedOrigins []string `json:"allowedOrigins"`
	// Plan names the commercial plan (see Plans); Limits are derived from it.
	Plan   string `json:"plan"`
	Limits Limits `json:"limits"`
	// Branding is shown by the widget and console.
	Branding Branding `json:"branding"`
	// Webhooks are the tenant's outgoing webhook subscriptions.
	Webhooks []Webhook `json:"webhooks"`
	// Dedicated asks for a dedicated stack (own database server, bucket and network) where the
	// driver supports it.
	Dedicated bool `json:"dedicated"`
	// Tier is TierShared or TierDedicated (Dedicated is true for the latter), fixed at creation.
	Tier string `json:"tier"`
	// Stack records what the supervisor created for the tenant besides its cell (a database
	// user, or the dedicated tier's network, database server, volume and bucket).
	Stack Stack `json:"stack"`
	// CreatedAt and UpdatedAt are UTC timestamps.
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	// DeleteAt is when a tenant in deletion-pending is torn down (the end of its grace period).
	DeleteAt *time.Time `json:"deleteAt,omitempty"`
	// StateBeforeDeletion is the state the tenant was in when its deletion was requested; a
	// cancelled deletion returns it there (see RestoreState). Empty unless deletion-pending.
	StateBeforeDeletion State `json:"stateBeforeDeletion,omitempty"`
	// TeardownDone counts the teardown actions of a deleting tenant already done and recorded
	// with an event (route, cell stop, cell removal, each kind of data, credentials), so a
	// supervisor taking over after a crash continues with the next one.
	TeardownDone int `json:"teardownDone,omitempty"`
	// URL is the tenant's public base URL, e.g. "http://acme.localhost:8080".
	URL string `json:"url"`
	// Cell holds what the driver recorded about the tenant's cell.
	Cell Cell `json:"cell"`
	// Generation counts the changes of the cell's configuration that a running cell only picks up
	// when restarted (signing-key rotations). The supervisor restarts the cell of a live tenant
	// whose Cell.Generation differs from it.
	Generation int64 `json:"generation"`
	// SigningKeyID is the `kid` of the cell's active token-signing key. It is public (every token
	// header and the cell's JWKS carry it); the tenant service fills it from Secrets for callers.
	SigningKeyID string `json:"signingKid,omitempty"`
	// Tenancy is TenancyStrict or TenancyCompat (tenancy.go): whether the cell also serves
	// requests without the tenant context during a migration's switch-over. Empty when read from
	// a registry written before tenancy modes (strict).
	Tenancy string `json:"tenancy"`
	// Secrets never leave the control plane through the API.
	Secrets Secrets `json:"-"`
	// Version counts saved changes; the store uses it to refuse a save based on a stale read.
	Version int64 `json:"-"`
}

// Limits are a tenant's quotas. Zero means unlimited.
type Limits struct {
	// MaxAgents is the most agents (users) the tenant may have.
	MaxAgents int `json:"maxAgents"`
	// MaxConcurrentChats is the most open (queued or active) chats at once.
	MaxConcurrentChats int `json:"maxConcurrentChats"`
	// MaxUploadBytes is the largest attachment, in bytes.
	MaxUploadBytes int64 `json:"maxUploadBytes"`
}

// Branding is the tenant's look in the widget and console.
type Branding struct {
	// PrimaryColor is a CSS colour such as "#2563eb".
	PrimaryColor string `json:"primaryColor"`
	// WelcomeText is the first line a visitor sees in the widget.
	WelcomeText string `json:"welcomeText"`
}

// Webhook is an outgoing webhook subscription of a tenant.
type Webhook struct {
	// URL receives POSTed events.
	URL string `json:"url"`
	// Events lists the event types delivered, e.g. "chat.resolved".
	Events []string `json:"events"`
}

// Cell is what a driver recorded about a tenant's cell when it last started it.
type Cell struct {
	// Driver names the driver that runs the cell, e.g. "process".
	Driver string `json:"driver,omitempty"`
	// Address is the cell's HTTP address as "host:port", e.g. "127.0.0.1:41234".
	Address string `json:"address,omitempty"`
	// PID is the operating-system process id (process driver).
	PID int `json:"pid,omitempty"`
	// ContainerID is the container id (docker driver).
	ContainerID string `json:"containerId,omitempty"`
	// Database is the tenant's database name, "t_<tenantId>".
	Database string `json:"database,omitempty"`
	// S3Prefix is the tenant's object prefix, "t/<tenantId>/".
	S3Prefix string `json:"s3Prefix,omitempty"`
	// StartedAt is when the cell was last started (UTC).
	StartedAt *time.Time `json:"startedAt,omitempty"`
	// Generation is the Tenant.Generation of the configuration the cell was started with (set by
	// the supervisor, not by drivers).
	Generation int64 `json:"generation"`
}

// Secrets are a tenant's credentials, kept in the registry and handed only to its cell.
type Secrets struct {
	// SigningKeySeed is the 32-byte Ed25519 seed (RFC 8032) of the cell's token-signing key.
	SigningKeySeed []byte
	// SigningKeyID is that key's JWT `kid`.
	SigningKeyID string
	// PreviousKeys are the retired signing keys whose tokens may still be valid; the cell keeps
	// verifying them and lists them in its JWKS (see RotateSigningKey).
	PreviousKeys []cell.VerificationKey
	// BootstrapUsers are created by the cell when missing (the first tenant-admin, seeded agents).
	BootstrapUsers []cell.BootstrapUser
	// DatabasePassword is the password of the tenant's own database user (Stack.DatabaseUser),
	// 32 random bytes in hex; empty when it has none.
	DatabasePassword string
}

// NewSigningKeyID returns a new random JWT `kid` for a cell's signing key: "k-" and 10 characters
// of a tenant id.
func NewSigningKeyID() string { return "k-" + NewTenantID()[:10] }

// RotateSigningKey replaces the active signing key with a new random Ed25519 key (crypto/rand)
// under a new kid, retires the old one at now (it becomes the first of PreviousKeys, so tokens it
// signed keep verifying) and drops the previous keys retired more than keep ago (keep is the
// lifetime of the longest token, after which none of theirs can still be valid). It returns the
// new kid.
func (s *Secrets) RotateSigningKey(now time.Time, keep time.Duration) string {
	now = now.UTC()
	previous := make([]cell.VerificationKey, 0, len(s.PreviousKeys)+1)
	if len(s.SigningKeySeed) == ed25519.SeedSize && s.SigningKeyID != "" {
		pub := ed25519.NewKeyFromSeed(s.SigningKeySeed).Public().(ed25519.PublicKey)
		previous = append(previous, cell.VerificationKey{KID: s.SigningKeyID, PublicKey: pub, RetiredAt: now})
	}
	for _, k := range s.PreviousKeys {
		if now.Sub(k.RetiredAt) <= keep {
			previous = append(previous, k)
		}
	}
	kid := NewSigningKeyID()
	for slices.ContainsFunc(previous, func(k cell.VerificationKey) bool { return k.KID == kid }) {
		kid = NewSigningKeyID()
	}
	seed := make([]byte, ed25519.SeedSize)
	_, _ = rand.Read(seed) // crypto/rand.Read never fails on supported platforms.
	s.SigningKeySeed, s.SigningKeyID, s.PreviousKeys = seed, kid, previous
	return kid
}

// Event records one lifecycle transition of a tenant, or, with From equal to To, another change
// kept in its history (a signing-key rotation).
type Event struct {
	// TenantID is the tenant the event belongs to.
	TenantID string `json:"tenantId"`
	// Seq orders a tenant's events: it is the tenant's Version after the transition.
	Seq int64 `json:"seq"`
	// From and To are the states before and after; From is "" for the registration event.
	From State `json:"from"`
	To   State `json:"to"`
	// At is when the transition was saved (UTC).
	At time.Time `json:"at"`
	// Reason explains the transition, e.g. "requested by super-admin" or a failure message.
	Reason string `json:"reason,omitempty"`
}

// Plan names. Plans maps each to its limits; DefaultPlan is used when none is given.
const (
	PlanFree       = "free"
	PlanPro        = "pro"
	PlanEnterprise = "enterprise"
	DefaultPlan    = PlanFree
)

// Plans maps every plan name to the limits a tenant on it gets.
var Plans = map[string]Limits{
	PlanFree:       {MaxAgents: 3, MaxConcurrentChats: 50, MaxUploadBytes: 10 << 20},
	PlanPro:        {MaxAgents: 50, MaxConcurrentChats: 1000, MaxUploadBytes: 25 << 20},
	PlanEnterprise: {MaxAgents: 0, MaxConcurrentChats: 0, MaxUploadBytes: 100 << 20},
}

// PlanRates maps every plan name to its tenant-wide request budgets per minute (enforced by the
// cell on top of its per-address limits; zero is unlimited). An unknown plan gets the free one's.
var PlanRates = map[string]cell.TenantRates{
	PlanFree:       {Logins: 300, VisitorSessions: 600, ChatCreates: 300, Uploads: 300, Messages: 6000},
	PlanPro:        {Logins: 3000, VisitorSessions: 6000, ChatCreates: 3000, Uploads: 3000, Messages: 60000},
	PlanEnterprise: {},
}

// RatesOf returns the request budgets of plan.
func RatesOf(plan string) cell.TenantRates {
	if r, ok := PlanRates[plan]; ok {
		return r
	}
	return PlanRates[PlanFree]
}

// DatabaseName returns the name of a tenant's database: "t_<tenantId>".
func DatabaseName(tenantID string) string { return "t_" + tenantID }

// S3Prefix returns a tenant's object prefix: "t/<tenantId>/".
func S3Prefix(tenantID string) string { return "t/" + tenantID + "/" }

// tenantIDEncoding is lowercase base32 (RFC 4648 alphabet) without padding.
var tenantIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewTenantID returns a new random tenant id: 16 bytes from crypto/rand as 26 characters of
// lowercase unpadded base32 ([a-z2-7]). With 128 random bits an id is never reused in practice.
func NewTenantID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms.
	return tenantIDEncoding.EncodeToString(b)
}

// ReservedKeys are subdomain slugs no tenant may take: platform hosts and names that invite
// phishing or clash with infrastructure.
var ReservedKeys = []string{
	"www", "api", "admin", "app", "static", "s3", "traefik", "localhost", "console", "dashboard",
	"mail", "smtp", "ftp", "ns1", "ns2", "cdn", "assets", "status", "help", "support", "docs",
	"auth", "login", "sso", "controlplane", "control", "ctl", "edge", "root", "system", "atende",
	"minio", "mongo", "nats", "metrics", "grafana",
}

var keyPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// ValidateKey checks that key can be a tenant's subdomain: a DNS label (RFC 1035 §2.3.1, lowercase)
// of 3 to 63 characters from [a-z0-9-] that neither starts nor ends with '-', is not
// punycode-like ("xn--" and any "??--" prefix) and is not one of ReservedKeys. It returns an
// invalid *Error whose message says which rule failed.
func ValidateKey(key string) error {
	switch {
	case len(key) < 3 || len(key) > 63:
		return Errorf(EInvalid, "key %q must be 3 to 63 characters long", key)
	case !keyPattern.MatchString(key):
		return Errorf(EInvalid, "key %q may contain only lowercase letters, digits and '-', and must not start or end with '-'", key)
	case len(key) >= 4 && key[2:4] == "--":
		return Errorf(EInvalid, "key %q must not have '--' in positions 3 and 4 (reserved for punycode)", key)
	case slices.Contains(ReservedKeys, key):
		return Errorf(EInvalid, "key %q is reserved", key)
	}
	return nil
}

// ValidateOrigin checks that origin is an exact web origin: "http" or "https" scheme, a host, an
// optional port and nothing else (no path, query, fragment or user info). It returns an invalid
// *Error otherwise.
func ValidateOrigin(origin string) error {
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(origin, "/") {
		return Errorf(EInvalid, "allowed origin %q must look like https://example.com or http://host:port", origin)
	}
	return nil
}
