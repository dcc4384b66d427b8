package supervisor

import (
	"crypto/ed25519"
	"net"
	"strconv"
	"strings"
	"time"

	"atende/cell"
	"atende/controlplane"
)

// Platform is the deployment-wide configuration every cell shares: where tenants are reached,
// which database server and object store they use, and which key signs super-admin tokens.
type Platform struct {
	// Domain is the parent domain of tenant hosts: tenant "acme" is served on "acme.<Domain>".
	Domain string
	// PublicScheme ("http" or "https") and PublicPort form tenants' public URLs; the port is
	// omitted when it is the scheme's default (80 or 443) or 0.
	PublicScheme string
	PublicPort   int
	// MongoURI is the MongoDB server holding the tenants' databases.
	MongoURI string
	// S3Endpoint is the object store's URL as cells reach it; S3PublicEndpoint the one written
	// into presigned URLs for browsers (empty: S3Endpoint).
	S3Endpoint, S3PublicEndpoint string
	// S3Region, S3Bucket, S3AccessKey and S3SecretKey complete the object-store settings. The
	// access key and secret are handed to cells only when the supervisor has no ObjectStoreIAM
	// (Options.ObjectStoreIAM); with one, each cell gets its tenant's own credentials instead.
	S3Region, S3Bucket, S3AccessKey, S3SecretKey string
	// ControlPlaneKey verifies super-admin tokens in cells.
	ControlPlaneKey ed25519.PublicKey
	// PresignTTL is the lifetime of presigned attachment URLs (0: the cell's default).
	PresignTTL time.Duration
	// CellLogLevel is passed to cells ("debug", "info", "warn", "error"; empty: "info").
	CellLogLevel string
	// TrustedProxies are passed to cells (cell.Config.TrustedProxies): the addresses or CIDR
	// ranges of the proxies (Traefik) whose X-Forwarded-For they believe besides the loopback.
	TrustedProxies []string
}

// TenantHost returns the host name of the tenant with key: "<key>.<Domain>".
func (p Platform) TenantHost(key string) string { return key + "." + p.Domain }

// TenantURL returns the public base URL of the tenant with key, e.g.
// "http://acme.localhost:8080".
func (p Platform) TenantURL(key string) string {
	scheme := p.PublicScheme
	if scheme == "" {
		scheme = "http"
	}
	host := p.TenantHost(key)
	if p.PublicPort != 0 && !(scheme == "http" && p.PublicPort == 80) && !(scheme == "https" && p.PublicPort == 443) {
		host = net.JoinHostPort(host, strconv.Itoa(p.PublicPort))
	}
	return scheme + "://" + host
}

// CellConfig returns the configuration of t's cell, with an empty ListenAddr for the driver to
// choose. Resource names derive from the tenant id (DESIGN.md §4).
func (p Platform) CellConfig(t *controlplane.Tenant) cell.Config {
	cfg := cell.Config{
		TenantID: t.ID, TenantKey: t.Key, TenantName: t.Name,
		Hosts: []string{p.TenantHost(t.Key)}, PublicURL: p.TenantURL(t.Key),
		AllowedOrigins: t.AllowedOrigins,
		MongoURI:       p.MongoURI, Database: controlplane.DatabaseName(t.ID),
		S3Endpoint: p.S3Endpoint, S3PublicEndpoint: p.S3PublicEndpoint, S3Region: p.S3Region,
		S3Bucket: p.S3Bucket, S3Prefix: controlplane.S3Prefix(t.ID),
		S3AccessKey: p.S3AccessKey, S3SecretKey: p.S3SecretKey,
		SigningKeyID: t.Secrets.SigningKeyID, PreviousKeys: t.Secrets.PreviousKeys, ControlPlaneKey: p.ControlPlaneKey,
		BootstrapUsers: t.Secrets.BootstrapUsers, PresignTTL: p.PresignTTL,
		MaxUploadBytes: t.Limits.MaxUploadBytes, MaxAgents: t.Limits.MaxAgents, LogLevel: strings.ToLower(p.CellLogLevel),
		MaxOpenChats: t.Limits.MaxConcurrentChats, TenantRates: controlplane.RatesOf(t.Plan),
		TrustedProxies: p.TrustedProxies,
	}
	cfg.Tenancy = t.Tenancy
	if len(t.Secrets.SigningKeySeed) == ed25519.SeedSize {
		cfg.SigningKey = ed25519.NewKeyFromSeed(t.Secrets.SigningKeySeed)
	}
	return cfg
}
