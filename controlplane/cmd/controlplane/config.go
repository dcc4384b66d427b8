package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"atende/cell"
	"atende/controlplane/docker"
	"atende/traefik"
)

// Environment variables of the control plane. Each has a flag of the same meaning (see
// loadConfig); a flag given on the command line wins over the variable.
const (
	envDataDir          = "ATENDE_DATA_DIR"
	envAPIAddr          = "ATENDE_API_ADDR"
	envEdgeAddr         = "ATENDE_EDGE_ADDR"
	envDomain           = "ATENDE_DOMAIN"
	envPublicURLPort    = "ATENDE_PUBLIC_URL_PORT"
	envMongoURI         = "ATENDE_MONGO_URI"
	envMongoAddr        = "ATENDE_MONGO_ADDR"
	envS3Endpoint       = "ATENDE_S3_ENDPOINT"
	envS3PublicEndpoint = "ATENDE_S3_PUBLIC_ENDPOINT"
	envS3AccessKey      = "ATENDE_S3_ACCESS_KEY"
	envS3SecretKey      = "ATENDE_S3_SECRET_KEY"
	envS3Bucket         = "ATENDE_S3_BUCKET"
	envS3Region         = "ATENDE_S3_REGION"
	envS3Addr           = "ATENDE_S3_ADDR"
	envCellBin          = "ATENDE_CELL_BIN"
	envDriver           = "ATENDE_DRIVER"
	envCellImage        = "ATENDE_CELL_IMAGE"
	envMongoImage       = "ATENDE_MONGO_IMAGE"
	envCellPresignTTL   = "ATENDE_CELL_PRESIGN_TTL"
	envSeedDev          = "ATENDE_SEED_DEV"
	envDeleteGrace      = "ATENDE_DELETE_GRACE"
	envLogLevel         = "ATENDE_LOG_LEVEL"
	// Settings of a deployment behind Traefik in containers (docker-compose.yml).
	envCellTrustedProxies = "ATENDE_CELL_TRUSTED_PROXIES"
	envDockerNetwork      = "ATENDE_DOCKER_NETWORK"
	envEdgeInternalURL    = "ATENDE_EDGE_INTERNAL_URL"
)

// config is the control plane's whole configuration, read once at start.
type config struct {
	DataDir, APIAddr, EdgeAddr, Domain string
	// PublicURLPort is the port in tenants' public URLs; 0 means the edge's port.
	PublicURLPort int
	// MongoURI empty means an embedded FerretDB on MongoAddr.
	MongoURI, MongoAddr string
	// S3Endpoint empty means an embedded versitygw on S3Addr with generated root credentials.
	S3Endpoint, S3PublicEndpoint, S3AccessKey, S3SecretKey, S3Bucket, S3Region, S3Addr string
	CellBin                                                                            string
	CellPresignTTL, DeleteGrace                                                        time.Duration
	SeedDev                                                                            bool
	LogLevel                                                                           slog.Level
	LogLevelName                                                                       string

	// Driver runs cells: driverProcess (child processes) or driverDocker (containers from
	// CellImage through the local Docker engine; see driver.go).
	Driver, CellImage string
	// PlatformWebhookURL, when set, receives every tenant lifecycle event (platformhook), signed
	// with PlatformWebhookSecret.
	PlatformWebhookURL, PlatformWebhookSecret string
	// MongoImage is the dedicated tier's database server image (docker driver only).
	MongoImage string

	// CellTrustedProxies are the addresses or CIDR ranges whose X-Forwarded-For cells believe
	// besides the loopback (cell.Config.TrustedProxies): Traefik's network when Traefik runs in a
	// container. Empty: the loopback only.
	CellTrustedProxies []string
	// DockerNetwork, with the docker driver, is the network every cell container also joins and
	// is addressed on ("atende-cell-<tenantId>:8080", see docker.Options.Network) instead of a
	// port published on this host: the network Traefik, MongoDB and S3 are on in a compose
	// deployment. Empty: cells are published on 127.0.0.1.
	DockerNetwork string
	// EdgeInternalURL is the base URL at which Traefik reaches the dev edge router, the backend
	// of its fallback and paused services (landing, "tenant not found" and paused pages), e.g.
	// "http://controlplane:8080" in compose. Empty: http://<the edge's listen address>.
	EdgeInternalURL string
}

// loadConfig reads the configuration from flags (args) over environment variables (getenv) over
// defaults, and validates it. The error names every invalid setting.
func loadConfig(args []string, getenv func(string) string) (config, error) {
	env := func(name, def string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return def
	}
	fs := flag.NewFlagSet("controlplane", flag.ContinueOnError)
	var c config
	var port, ttl, grace, seed string
	fs.StringVar(&c.DataDir, "data-dir", env(envDataDir, "./.atende"), "data directory ("+envDataDir+")")
	fs.StringVar(&c.APIAddr, "api-addr", env(envAPIAddr, "127.0.0.1:8081"), "control-plane API listen address ("+envAPIAddr+")")
	fs.StringVar(&c.EdgeAddr, "edge-addr", env(envEdgeAddr, "127.0.0.1:8080"), "dev edge router listen address ("+envEdgeAddr+")")
	fs.StringVar(&c.Domain, "domain", env(envDomain, "localhost"), "parent domain of tenant hosts ("+envDomain+")")
	fs.StringVar(&port, "public-url-port", env(envPublicURLPort, ""), "port in tenant URLs; default the edge port ("+envPublicURLPort+")")
	fs.StringVar(&c.MongoURI, "mongo-uri", env(envMongoURI, ""), "MongoDB URI; empty starts an embedded FerretDB ("+envMongoURI+")")
	fs.StringVar(&c.MongoAddr, "mongo-addr", env(envMongoAddr, "127.0.0.1:0"), "embedded FerretDB listen address ("+envMongoAddr+")")
	fs.StringVar(&c.S3Endpoint, "s3-endpoint", env(envS3Endpoint, ""), "S3 endpoint; empty starts an embedded versitygw ("+envS3Endpoint+")")
	fs.StringVar(&c.S3PublicEndpoint, "s3-public-endpoint", env(envS3PublicEndpoint, ""), "S3 endpoint in presigned URLs for browsers ("+envS3PublicEndpoint+")")
	fs.StringVar(&c.S3Bucket, "s3-bucket", env(envS3Bucket, "atende"), "bucket shared by cells ("+envS3Bucket+")")
	fs.StringVar(&c.S3Region, "s3-region", env(envS3Region, "us-east-1"), "S3 region ("+envS3Region+")")
	fs.StringVar(&c.S3Addr, "s3-addr", env(envS3Addr, "127.0.0.1:0"), "embedded versitygw listen address ("+envS3Addr+")")
	fs.StringVar(&c.CellBin, "cell-bin", env(envCellBin, ""), "cell executable; default the `cell` file next to this one ("+envCellBin+")")
	fs.StringVar(&c.Driver, "driver", env(envDriver, driverProcess), "cell driver: process or docker ("+envDriver+")")
	fs.StringVar(&c.CellImage, "cell-image", env(envCellImage, docker.DefaultImage), "cell image of the docker driver, built by `make images` ("+envCellImage+")")
	fs.StringVar(&c.MongoImage, "mongo-image", env(envMongoImage, docker.DefaultDatabaseImage), "database server image of dedicated tenants (docker driver), built by `make images` ("+envMongoImage+")")
	fs.StringVar(&ttl, "cell-presign-ttl", env(envCellPresignTTL, "5m"), "lifetime of presigned attachment URLs, at most 5m ("+envCellPresignTTL+")")
	fs.StringVar(&grace, "delete-grace", env(envDeleteGrace, "24h"), "grace period before a deleted tenant is torn down; ctl tenant cancel-delete undoes a deletion within it ("+envDeleteGrace+")")
	fs.StringVar(&seed, "seed-dev", env(envSeedDev, "true"), "seed the dev tenant ("+envSeedDev+")")
	var proxies string
	fs.StringVar(&proxies, "cell-trusted-proxies", env(envCellTrustedProxies, ""), "comma-separated IPs or CIDR ranges whose X-Forwarded-For cells believe, besides the loopback ("+envCellTrustedProxies+")")
	fs.StringVar(&c.DockerNetwork, "docker-network", env(envDockerNetwork, ""), "network cell containers join and are addressed on, instead of a published port ("+envDockerNetwork+")")
	fs.StringVar(&c.EdgeInternalURL, "edge-internal-url", env(envEdgeInternalURL, ""), "base URL at which Traefik reaches the edge router; default http://<edge address> ("+envEdgeInternalURL+")")
	fs.StringVar(&c.PlatformWebhookURL, "platform-webhook-url", env(envPlatformWebhookURL, ""), "URL receiving every tenant lifecycle event as a signed POST; empty: none ("+envPlatformWebhookURL+")")
	fs.StringVar(&c.LogLevelName, "log-level", env(envLogLevel, "info"), "debug, info, warn or error ("+envLogLevel+")")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	// Secrets come from the environment only, never from the command line.
	c.S3AccessKey, c.S3SecretKey = getenv(envS3AccessKey), getenv(envS3SecretKey)

	var errs []error
	for name, addr := range map[string]string{envAPIAddr: c.APIAddr, envEdgeAddr: c.EdgeAddr, envMongoAddr: c.MongoAddr, envS3Addr: c.S3Addr} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not host:port", name, addr))
		}
	}
	c.Domain = strings.TrimSuffix(strings.ToLower(c.Domain), ".")
	if err := traefik.CheckHost(c.Domain); err != nil {
		errs = append(errs, fmt.Errorf("%s: %v", envDomain, err))
	}
	if port != "" {
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 {
			errs = append(errs, fmt.Errorf("%s: %q is not a port number", envPublicURLPort, port))
		}
		c.PublicURLPort = p
	}
	if c.S3Endpoint != "" && (c.S3AccessKey == "" || c.S3SecretKey == "") {
		errs = append(errs, fmt.Errorf("%s and %s are required with %s", envS3AccessKey, envS3SecretKey, envS3Endpoint))
	}
	if c.S3Bucket == "" {
		errs = append(errs, fmt.Errorf("%s must not be empty", envS3Bucket))
	}
	var err error
	if c.CellPresignTTL, err = time.ParseDuration(ttl); err != nil || c.CellPresignTTL <= 0 || c.CellPresignTTL > cell.MaxPresignTTL {
		errs = append(errs, fmt.Errorf("%s: %q must be a duration in (0, 5m]", envCellPresignTTL, ttl))
	}
	if c.DeleteGrace, err = time.ParseDuration(grace); err != nil || c.DeleteGrace < 0 {
		errs = append(errs, fmt.Errorf("%s: %q must be a duration >= 0", envDeleteGrace, grace))
	}
	if c.SeedDev, err = strconv.ParseBool(seed); err != nil {
		errs = append(errs, fmt.Errorf("%s: %q must be true or false", envSeedDev, seed))
	}
	if err := c.LogLevel.UnmarshalText([]byte(c.LogLevelName)); err != nil {
		errs = append(errs, fmt.Errorf("%s: %q must be debug, info, warn or error", envLogLevel, c.LogLevelName))
	}
	c.LogLevelName = strings.ToLower(c.LogLevel.String())
	if c.CellBin == "" {
		if exe, err := os.Executable(); err == nil {
			c.CellBin = filepath.Join(filepath.Dir(exe), "cell")
		}
	}
	if abs, err := filepath.Abs(c.CellBin); err == nil {
		c.CellBin = abs
	}
	switch c.Driver {
	case driverProcess:
		if fi, err := os.Stat(c.CellBin); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			errs = append(errs, fmt.Errorf("%s: no cell executable at %s (run `make build` or set %s)", envCellBin, c.CellBin, envCellBin))
		}
	case driverDocker:
		if c.CellImage == "" {
			errs = append(errs, fmt.Errorf("%s must not be empty with %s=%s", envCellImage, envDriver, driverDocker))
		}
	default:
		errs = append(errs, fmt.Errorf("%s: %q must be %s or %s", envDriver, c.Driver, driverProcess, driverDocker))
	}
	if abs, err := filepath.Abs(c.DataDir); err == nil {
		c.DataDir = abs
	}
	errs = append(errs, c.checkContainerSettings(proxies)...)
	errs = append(errs, c.checkPlatformWebhook(getenv)...)
	return c, errors.Join(errs...)
}

// checkContainerSettings parses the comma-separated list proxies into c.CellTrustedProxies and
// validates the settings of a deployment behind Traefik in containers. It returns one error per
// invalid setting.
func (c *config) checkContainerSettings(proxies string) []error {
	var errs []error
	for _, p := range strings.Split(proxies, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if err := cell.CheckTrustedProxy(p); err != nil {
			errs = append(errs, fmt.Errorf("%s: %v", envCellTrustedProxies, err))
		}
		c.CellTrustedProxies = append(c.CellTrustedProxies, p)
	}
	if c.DockerNetwork != "" && c.Driver != driverDocker {
		errs = append(errs, fmt.Errorf("%s needs %s=%s", envDockerNetwork, envDriver, driverDocker))
	}
	if c.EdgeInternalURL != "" {
		u, err := url.Parse(c.EdgeInternalURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			errs = append(errs, fmt.Errorf("%s: %q must be http(s)://host[:port]", envEdgeInternalURL, c.EdgeInternalURL))
		}
		c.EdgeInternalURL = strings.TrimSuffix(c.EdgeInternalURL, "/")
	}
	return errs
}

// Lifecycle webhooks to the platform (package platformhook). The secret comes from the
// environment only, never from the command line.
const (
	envPlatformWebhookURL    = "ATENDE_PLATFORM_WEBHOOK_URL"
	envPlatformWebhookSecret = "ATENDE_PLATFORM_WEBHOOK_SECRET"
)

// minPlatformWebhookSecret is the shortest secret accepted, in bytes: an HMAC-SHA256 key should
// not be guessable (RFC 2104 §3 recommends at least the hash's output length; 16 bytes of a
// random token is the floor here).
const minPlatformWebhookSecret = 16

// checkPlatformWebhook reads the webhook secret and validates the platform webhook settings: a
// URL must be an absolute http or https URL and needs a secret of at least
// minPlatformWebhookSecret bytes. It returns one error per invalid setting.
func (c *config) checkPlatformWebhook(getenv func(string) string) []error {
	c.PlatformWebhookSecret = getenv(envPlatformWebhookSecret)
	if c.PlatformWebhookURL == "" {
		return nil
	}
	var errs []error
	if u, err := url.Parse(c.PlatformWebhookURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("%s must be an absolute http or https URL", envPlatformWebhookURL))
	}
	if len(c.PlatformWebhookSecret) < minPlatformWebhookSecret {
		errs = append(errs, fmt.Errorf("%s must be set to at least %d characters with %s", envPlatformWebhookSecret, minPlatformWebhookSecret, envPlatformWebhookURL))
	}
	return errs
}
