// Package docker is the container cell driver: one container per tenant, created through the
// Docker Engine API (github.com/docker/docker/client) from a cell image built FROM scratch (see
// deploy/cell.Dockerfile and `make images`; nothing is ever pulled).
//
// For a tenant with id <id> the driver creates
//   - a user-defined bridge network NetworkName(<id>) = "atende-t-<id>" holding only that cell,
//     so cells cannot reach each other (Docker isolates user-defined bridges from one another);
//   - a container ContainerName(<id>) = "atende-cell-<id>" attached to it, configured with the
//     cell's ATENDE_CELL_* environment (cell.Config.Environ), listening on 0.0.0.0:8080 inside,
//     labelled (LabelManaged, LabelTenantID, LabelFence, LabelConfig), with a HEALTHCHECK that runs
//     `/cell -healthcheck`, a restart policy, memory/CPU/pids limits, a read-only root file system
//     (plus a small tmpfs on /tmp), no-new-privileges and every capability dropped.
//
// Addresses. The cell's port 8080 is published on Options.PublishHost (127.0.0.1) with a host
// port the engine chooses, and that "127.0.0.1:<port>" is the cell's Address: the control plane
// and the dev edge router on this host reach the cell there. The engine picks a new host port
// each time the container starts (also after a restart by the restart policy); Status always
// reports the current one and the supervisor follows it (its keepLive step records the new
// address and republishes the routes). A Start with cell.Config.ListenAddr set asks for that
// address's port again (the supervisor does so when it restarts a cell with a new configuration)
// and falls back to an engine-chosen port if it is taken. In production, where the control plane
// and Traefik run in containers themselves (docker-compose.yml), publishing is unnecessary: with
// Options.Network each cell also joins that network, its Address is "atende-cell-<id>:8080" and
// Traefik routes to http://atende-cell-<id>:8080. Remove disconnects every other endpoint of the
// tenant's own network before deleting it.
//
// Reaching MongoDB and S3. A cell's loopback is its own, so the services must listen on an
// address of the host that containers can reach and that is not exposed to the outside: the
// gateway of Docker's default bridge (docker0, typically 172.17.0.1; see HostGateway). Traffic
// from any user-defined bridge to a host address goes through the host's INPUT chain, not through
// Docker's inter-network isolation (FORWARD), so every cell reaches it. Each cell also gets
// "host.docker.internal:host-gateway" in /etc/hosts (Options.ExtraHosts), which resolves to that
// same address. 127.0.0.1 does not work (connection refused inside the container); 0.0.0.0 works
// but exposes the services on every interface of the host.
//
// Restarts. The restart policy (default unless-stopped) restarts a cell whose process dies
// (crash, OOM kill, a kill from outside the engine). The engine treats a kill through its own API
// (`docker kill`, ContainerKill, whatever the signal) as a deliberate stop and does not restart
// the container: Status then reports CellStopped with the exit code in LastExit, and the
// supervisor starts it again (Start on a stopped container restarts it). Docker never restarts a
// container only because its HEALTHCHECK fails; the health status is informational.
package docker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/versions"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"

	"atende/cell"
	"atende/controlplane"
)

// DriverName is the name the docker driver records in controlplane.Cell.Driver.
const DriverName = "docker"

// DefaultImage is the cell image `make images` builds.
const DefaultImage = "atende/cell:dev"

// ContainerPort is the TCP port the cell listens on inside its container (on 0.0.0.0).
const ContainerPort = 8080

// Labels the driver puts on what it creates. LabelManaged and LabelTenantID are on containers and
// networks; LabelFence and LabelConfig on containers only.
const (
	// LabelManaged is "true" on every container and network of the driver.
	LabelManaged = "atende.managed"
	// LabelTenantID holds the tenant id.
	LabelTenantID = "atende.tenantId"
	// LabelFence holds the fencing counter (Options.Fence) of the control plane that created the
	// container, in decimal.
	LabelFence = "atende.fence"
	// LabelConfig holds a hash of everything the container was created with (image, environment,
	// limits, ports); Start recreates a stopped container whose hash differs.
	LabelConfig = "atende.config"
)

// NetworkName returns the name of a tenant's bridge network: "atende-t-<tenantId>".
func NetworkName(tenantID string) string { return "atende-t-" + tenantID }

// ContainerName returns the name of a tenant's cell container: "atende-cell-<tenantId>".
func ContainerName(tenantID string) string { return "atende-cell-" + tenantID }

// Resources are the limits of one cell container. Zero fields are unlimited.
type Resources struct {
	// MemoryBytes is the memory limit in bytes (swap included: the driver sets the same value as
	// the memory+swap limit, so a cell never swaps).
	MemoryBytes int64
	// NanoCPUs is the CPU quota in billionths of a CPU (1e9 = one CPU).
	NanoCPUs int64
	// Pids is the most processes and threads the container may have.
	Pids int64
}

// DefaultResources are the limits of a cell when Options.Resources is zero: 256 MiB of memory,
// one CPU and 512 pids. A cell (Go, Fiber, MongoDB and S3 clients) idles at about 20 MiB and
// about 15 threads.
var DefaultResources = Resources{MemoryBytes: 256 << 20, NanoCPUs: 1e9, Pids: 512}

// Options configure a Driver.
type Options struct {
	// Client talks to the engine; default a client from the environment (DOCKER_HOST, default
	// unix:///var/run/docker.sock) with API-version negotiation. A client passed in is not closed
	// by Close.
	Client *client.Client
	// Image is the cell image; default DefaultImage. It must exist locally: the driver never pulls.
	Image string
	// DatabaseImage is the dedicated tier's database server image (see dedicated.go); default
	// DefaultDatabaseImage. It must exist locally when a dedicated tenant is created.
	DatabaseImage string
	// SubnetPool is the IPv4 range tenant networks take their /28 subnets from; default
	// DefaultSubnetPool (see subnets.go: the engine's own pools hold about 30 networks).
	SubnetPool string
	// Resources are every cell's limits; default DefaultResources. ResourcesFor, when set, chooses
	// them per cell instead (e.g. from the tenant's plan).
	Resources    Resources
	ResourcesFor func(cfg cell.Config) Resources
	// RestartPolicy is "unless-stopped" (default) or "on-failure". unless-stopped also brings
	// cells back after the engine itself restarts (it stops them with SIGTERM, so they exit 0,
	// which on-failure would not restart); both leave a container stopped through Stop alone.
	RestartPolicy string
	// Fence is the fencing counter of the control plane using this driver (its lease's counter),
	// recorded in LabelFence; 0 disables fencing. A driver refuses (conflict) to replace, stop or
	// remove a container labelled with a higher fence: a newer control plane owns it. SetFence
	// changes it later. A fence in a call's context (controlplane.WithFence: the supervisor passes
	// the fence of the tenant's lease with every call of a step) takes its place for that call.
	Fence int64
	// PublishHost is the host address cells' ports are published on; default "127.0.0.1".
	PublishHost string
	// Network, when set, is an existing network every cell container joins besides its own (in
	// a compose deployment: the network of Traefik, the control plane, MongoDB and S3). The
	// cell's Address is then "<ContainerName>:<ContainerPort>", resolved by the engine's DNS on
	// that network, and no port is published on the host. Cells on it can reach one another's
	// HTTP port, which serves nothing a tenant host does not (each cell checks Host, audience and
	// tenant); the network is where they reach MongoDB and S3 too.
	Network string
	// ExtraHosts are added to every cell's /etc/hosts; default
	// ["host.docker.internal:host-gateway"]. Pass an empty non-nil slice for none.
	ExtraHosts []string
	// Labels are added to every container and network the driver creates (e.g. to find a test
	// run's objects).
	Labels map[string]string
	// User is the numeric "uid:gid" cells run as; default "65534:65534" (nobody).
	User string
	// HealthInterval is the interval of the container's HEALTHCHECK (`/cell -healthcheck`);
	// default 30 s. During HealthStartPeriod (default 30 s), when failing checks do not count,
	// an engine of API 1.44 or later (Docker 25+) checks every HealthInterval or 2 s, whichever
	// is shorter (StartInterval), so a new cell shows healthy within seconds; an older engine
	// shows it healthy after the first interval. The supervisor does not wait
	// for the engine's verdict (it polls /healthz itself); every check is a `runc exec`, and at
	// 5 s with 42 cells the engine spent half the machine's CPU on them.
	HealthInterval, HealthStartPeriod time.Duration
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL; default 10 s (a cell
	// drains in at most 5 s). It is rounded up to whole seconds, the engine's unit.
	StopTimeout time.Duration
	// Logger receives the driver's events; default slog.Default().
	Logger *slog.Logger
}

// Driver implements controlplane.Driver with Docker containers. Create it with New and Close it
// when done. Containers outlive the driver (and the control plane): a new driver finds them by
// name.
type Driver struct {
	opts      Options
	cli       *client.Client
	ownClient bool
	log       *slog.Logger
	fence     atomic.Int64

	mu    sync.Mutex
	locks map[string]*sync.Mutex // one per tenant: Start, Stop and Remove of a tenant are serial
	known map[string]bool        // tenants this driver started (StopAll)
}

var _ controlplane.Driver = (*Driver)(nil)

// New applies defaults to opts, connects to the engine and checks that it answers and that the
// cell image exists. It returns an error saying what is missing otherwise.
func New(ctx context.Context, opts Options) (*Driver, error) {
	if opts.Image == "" {
		opts.Image = DefaultImage
	}
	if opts.Resources == (Resources{}) {
		opts.Resources = DefaultResources
	}
	switch opts.RestartPolicy {
	case "":
		opts.RestartPolicy = string(container.RestartPolicyUnlessStopped)
	case string(container.RestartPolicyUnlessStopped), string(container.RestartPolicyOnFailure):
	default:
		return nil, fmt.Errorf("docker: restart policy %q: use unless-stopped or on-failure", opts.RestartPolicy)
	}
	if opts.PublishHost == "" {
		opts.PublishHost = "127.0.0.1"
	}
	if opts.ExtraHosts == nil {
		opts.ExtraHosts = []string{"host.docker.internal:host-gateway"}
	}
	if opts.User == "" {
		opts.User = "65534:65534"
	}
	if opts.HealthInterval <= 0 {
		opts.HealthInterval = 30 * time.Second
	}
	if opts.HealthStartPeriod <= 0 {
		opts.HealthStartPeriod = 30 * time.Second
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	d := &Driver{opts: opts, cli: opts.Client, log: opts.Logger, locks: map[string]*sync.Mutex{}, known: map[string]bool{}}
	d.fence.Store(opts.Fence)
	if d.cli == nil {
		cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
		if err != nil {
			return nil, fmt.Errorf("docker: client: %w", err)
		}
		d.cli, d.ownClient = cli, true
	}
	if _, err := d.cli.Ping(ctx); err != nil {
		d.Close()
		return nil, fmt.Errorf("docker: engine not reachable at %s: %w", d.cli.DaemonHost(), err)
	}
	if opts.Network != "" {
		if _, err := d.cli.NetworkInspect(ctx, opts.Network, network.InspectOptions{}); err != nil {
			d.Close()
			return nil, fmt.Errorf("docker: network %s for cells: %w", opts.Network, err)
		}
	}
	if _, err := d.cli.ImageInspect(ctx, opts.Image); err != nil {
		d.Close()
		if cerrdefs.IsNotFound(err) {
			return nil, fmt.Errorf("docker: cell image %s not found: build it with `make images` (images are never pulled)", opts.Image)
		}
		return nil, fmt.Errorf("docker: cell image %s: %w", opts.Image, err)
	}
	return d, nil
}

// Close releases the engine client if the driver created it. Containers keep running.
func (d *Driver) Close() error {
	if d.ownClient {
		return d.cli.Close()
	}
	return nil
}

// SetFence changes the fencing counter recorded on containers created from now on and checked by
// Start, Stop and Remove (see Options.Fence).
func (d *Driver) SetFence(fence int64) { d.fence.Store(fence) }

// Name implements controlplane.Driver.
func (d *Driver) Name() string { return DriverName }

// HostGateway returns the IPv4 address of the gateway of the engine's default bridge network
// ("bridge", docker0), e.g. "172.17.0.1": an address of the host that containers on any bridge
// network reach and that "host-gateway" resolves to by default. Services on the host that cells
// must reach (an embedded MongoDB or S3 server) listen there. It returns an error if the default
// bridge has no IPv4 gateway.
func (d *Driver) HostGateway(ctx context.Context) (string, error) {
	nw, err := d.cli.NetworkInspect(ctx, "bridge", network.InspectOptions{})
	if err != nil {
		return "", fmt.Errorf("docker: default bridge: %w", err)
	}
	// The engine often records only the subnet of its default bridge; the gateway is then the
	// bridge interface's address (on this host) or, by libnetwork's convention, the subnet's
	// first address.
	for _, c := range nw.IPAM.Config {
		if ip := net.ParseIP(c.Gateway); ip != nil && ip.To4() != nil {
			return ip.String(), nil
		}
		_, subnet, err := net.ParseCIDR(c.Subnet)
		if err != nil || subnet.IP.To4() == nil {
			continue
		}
		if ifc, err := net.InterfaceByName(nw.Options["com.docker.network.bridge.name"]); err == nil {
			addrs, _ := ifc.Addrs()
			for _, a := range addrs {
				if ipn, ok := a.(*net.IPNet); ok && subnet.Contains(ipn.IP) {
					return ipn.IP.String(), nil
				}
			}
		}
		first := slices.Clone(subnet.IP.To4())
		first[3]++
		return first.String(), nil
	}
	return "", errors.New("docker: the default bridge network has no IPv4 subnet")
}

// tenantIDPattern is what the driver accepts as a tenant id: it becomes part of container and
// network names ([a-zA-Z0-9][a-zA-Z0-9_.-]* for Docker). controlplane.NewTenantID produces
// [a-z2-7]{26}.
var tenantIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

func checkTenantID(id string) error {
	if !tenantIDPattern.MatchString(id) {
		return controlplane.Errorf(controlplane.EInvalid, "tenant id %q cannot name a container", id)
	}
	return nil
}

// lockTenant serializes the driver's changes to one tenant's container and network.
func (d *Driver) lockTenant(id string) func() {
	d.mu.Lock()
	m := d.locks[id]
	if m == nil {
		m = &sync.Mutex{}
		d.locks[id] = m
	}
	d.mu.Unlock()
	m.Lock()
	return m.Unlock
}

// spec is everything a cell container is created with.
type spec struct {
	config  *container.Config
	host    *container.HostConfig
	netConf *network.NetworkingConfig
	hash    string
}

// portKey is the container port in the engine's notation.
var portKey = nat.Port(strconv.Itoa(ContainerPort) + "/tcp")

// spec builds the container of cfg's cell, publishing it on hostPort ("" lets the engine choose).
func (d *Driver) spec(cfg cell.Config, hostPort string, fence int64) spec {
	cfg.ListenAddr = net.JoinHostPort("0.0.0.0", strconv.Itoa(ContainerPort))
	env := cfg.Environ()
	res := d.opts.Resources
	if d.opts.ResourcesFor != nil {
		res = d.opts.ResourcesFor(cfg)
	}
	health := &container.HealthConfig{
		Test:        []string{"CMD", "/cell", "-healthcheck"},
		Interval:    d.opts.HealthInterval,
		Timeout:     3 * time.Second,
		StartPeriod: d.opts.HealthStartPeriod,
		Retries:     3,
	}
	if versions.GreaterThanOrEqualTo(d.cli.ClientVersion(), "1.44") { // Docker 25 and later
		health.StartInterval = min(d.opts.HealthInterval, 2*time.Second)
	}
	restart := container.RestartPolicy{Name: container.RestartPolicyMode(d.opts.RestartPolicy)}
	binding := nat.PortBinding{HostIP: d.opts.PublishHost, HostPort: hostPort}
	tmpfs := map[string]string{"/tmp": "rw,noexec,nosuid,nodev,size=16m"}
	sum := sha256.New()
	ports := nat.PortMap{portKey: []nat.PortBinding{binding}}
	if d.opts.Network != "" {
		ports = nil // addressed on the network by name
	}
	_ = json.NewEncoder(sum).Encode([]any{d.opts.Image, env, d.opts.User, res, restart, ports, health, d.opts.ExtraHosts, tmpfs, d.opts.Network})
	hash := hex.EncodeToString(sum.Sum(nil))[:20]

	labels := map[string]string{}
	for k, v := range d.opts.Labels {
		labels[k] = v
	}
	labels[LabelManaged] = "true"
	labels[LabelTenantID] = cfg.TenantID
	labels[LabelFence] = strconv.FormatInt(fence, 10)
	labels[LabelConfig] = hash
	var pids *int64
	if res.Pids > 0 {
		p := res.Pids
		pids = &p
	}
	return spec{
		config: &container.Config{
			Image: d.opts.Image, Env: env, User: d.opts.User, Labels: labels, Healthcheck: health,
			ExposedPorts: nat.PortSet{portKey: struct{}{}},
		},
		host: &container.HostConfig{
			NetworkMode:    container.NetworkMode(NetworkName(cfg.TenantID)),
			PortBindings:   ports,
			RestartPolicy:  restart,
			ReadonlyRootfs: true,
			Tmpfs:          tmpfs,
			SecurityOpt:    []string{"no-new-privileges:true"},
			CapDrop:        []string{"ALL"},
			ExtraHosts:     d.opts.ExtraHosts,
			Resources: container.Resources{
				Memory: res.MemoryBytes, MemorySwap: res.MemoryBytes, NanoCPUs: res.NanoCPUs, PidsLimit: pids,
			},
		},
		netConf: &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{NetworkName(cfg.TenantID): {}}},
		hash:    hash,
	}
}

// requestedPort returns the port of cfg.ListenAddr ("" when it has none): the host port a Start
// asks for, to keep a restarted cell on its address.
func requestedPort(cfg cell.Config) string {
	if cfg.ListenAddr == "" {
		return ""
	}
	_, port, err := net.SplitHostPort(cfg.ListenAddr)
	if err != nil || port == "0" {
		return ""
	}
	return port
}

// Start implements controlplane.Driver. A running (or restarting) container of the tenant is left
// alone and its facts are returned. A stopped one created with the same configuration and fence
// is started again; any other is replaced. The container is published on the port of
// cfg.ListenAddr when it is set and free, on a port the engine chooses otherwise. Errors: invalid
// (bad tenant id), conflict (a newer control plane's container, see Options.Fence), and the
// engine's errors (e.g. a missing image).
func (d *Driver) Start(ctx context.Context, cfg cell.Config) (controlplane.Cell, error) {
	if err := checkTenantID(cfg.TenantID); err != nil {
		return controlplane.Cell{}, err
	}
	defer d.lockTenant(cfg.TenantID)()
	name := ContainerName(cfg.TenantID)
	fence := d.fenceOf(ctx)
	d.cli.NegotiateAPIVersion(ctx) // spec's health check depends on the engine's API version
	sp := d.spec(cfg, requestedPort(cfg), fence)
	for attempt := 0; ; attempt++ {
		if attempt == 3 {
			return controlplane.Cell{}, fmt.Errorf("docker: start cell of %s: container keeps changing under the driver", cfg.TenantID)
		}
		info, err := d.cli.ContainerInspect(ctx, name)
		switch {
		case cerrdefs.IsNotFound(err):
		case err != nil:
			return controlplane.Cell{}, fmt.Errorf("docker: inspect %s: %w", name, err)
		default:
			if err := d.checkFence(ctx, info); err != nil {
				return controlplane.Cell{}, err
			}
			if info.State != nil && (info.State.Running || info.State.Restarting) {
				d.markStarted(cfg.TenantID)
				return d.facts(info, cfg), nil
			}
			if info.Config.Labels[LabelConfig] == sp.hash && info.Config.Labels[LabelFence] == sp.config.Labels[LabelFence] {
				err := d.cli.ContainerStart(ctx, info.ID, container.StartOptions{})
				if err == nil {
					return d.startedFacts(ctx, cfg)
				}
				if !portTaken(err) {
					return controlplane.Cell{}, fmt.Errorf("docker: start %s: %w", name, err)
				}
				d.log.Warn("cell port taken; recreating the container on another port", attrTenantID, cfg.TenantID)
				sp = d.spec(cfg, "", fence)
			}
			if err := d.cli.ContainerRemove(ctx, info.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
				return controlplane.Cell{}, fmt.Errorf("docker: replace %s: %w", name, err)
			}
		}
		if err := d.ensureNetwork(ctx, cfg.TenantID); err != nil {
			return controlplane.Cell{}, err
		}
		created, err := d.cli.ContainerCreate(ctx, sp.config, sp.host, sp.netConf, nil, name)
		if cerrdefs.IsConflict(err) {
			continue // created concurrently (another control plane): look again
		}
		if err != nil {
			if cerrdefs.IsNotFound(err) {
				return controlplane.Cell{}, fmt.Errorf("docker: create %s: %w (build the image with `make images`; it is never pulled)", name, err)
			}
			return controlplane.Cell{}, fmt.Errorf("docker: create %s: %w", name, err)
		}
		if d.opts.Network != "" {
			// Engines before API 1.44 attach a container to one network at creation only.
			if err := d.cli.NetworkConnect(ctx, d.opts.Network, created.ID, nil); err != nil {
				_ = d.cli.ContainerRemove(ctx, created.ID, container.RemoveOptions{Force: true})
				return controlplane.Cell{}, fmt.Errorf("docker: connect %s to %s: %w", name, d.opts.Network, err)
			}
		}
		err = d.cli.ContainerStart(ctx, created.ID, container.StartOptions{})
		if err != nil && portTaken(err) && len(sp.host.PortBindings[portKey]) > 0 && sp.host.PortBindings[portKey][0].HostPort != "" {
			d.log.Warn("requested cell port taken; publishing on another port", attrTenantID, cfg.TenantID, attrAddr, cfg.ListenAddr)
			_ = d.cli.ContainerRemove(ctx, created.ID, container.RemoveOptions{Force: true})
			sp = d.spec(cfg, "", fence)
			continue
		}
		if err != nil {
			return controlplane.Cell{}, fmt.Errorf("docker: start %s: %w", name, err)
		}
		return d.startedFacts(ctx, cfg)
	}
}

// startedFacts records that the driver started the tenant's cell and returns its facts.
func (d *Driver) startedFacts(ctx context.Context, cfg cell.Config) (controlplane.Cell, error) {
	info, err := d.cli.ContainerInspect(ctx, ContainerName(cfg.TenantID))
	if err != nil {
		return controlplane.Cell{}, fmt.Errorf("docker: inspect %s: %w", ContainerName(cfg.TenantID), err)
	}
	d.markStarted(cfg.TenantID)
	c := d.facts(info, cfg)
	d.log.Info("cell started", attrTenantID, cfg.TenantID, attrAddr, c.Address, "container", shortID(info.ID))
	return c, nil
}

func (d *Driver) markStarted(id string) {
	d.mu.Lock()
	d.known[id] = true
	d.mu.Unlock()
}

// Log attribute keys.
const (
	attrTenantID = "tenantId"
	attrAddr     = "addr"
)

func shortID(id string) string { return id[:min(12, len(id))] }

// portTaken reports whether the engine failed to publish a port because it is in use.
func portTaken(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "port is already allocated") || strings.Contains(msg, "address already in use")
}

// fenceOf returns the fence of a call: the one in ctx (controlplane.WithFence, the lease of the
// supervisor step making the call), else the driver's (Options.Fence, SetFence).
func (d *Driver) fenceOf(ctx context.Context) int64 {
	if f, ok := controlplane.FenceFrom(ctx); ok {
		return f
	}
	return d.fence.Load()
}

// checkFence returns a conflict error if the container carries a higher fence than the call's
// (fenceOf).
func (d *Driver) checkFence(ctx context.Context, info container.InspectResponse) error {
	mine := d.fenceOf(ctx)
	if mine <= 0 || info.Config == nil {
		return nil
	}
	theirs, _ := strconv.ParseInt(info.Config.Labels[LabelFence], 10, 64)
	if theirs > mine {
		return controlplane.Errorf(controlplane.EConflict,
			"cell container %s belongs to a newer control plane (fence %d > %d)", strings.TrimPrefix(info.Name, "/"), theirs, mine)
	}
	return nil
}

// ensureNetwork creates the tenant's bridge network unless it exists. It refuses a network of that
// name the driver did not create.
func (d *Driver) ensureNetwork(ctx context.Context, tenantID string) error {
	name := NetworkName(tenantID)
	nw, err := d.cli.NetworkInspect(ctx, name, network.InspectOptions{})
	if err == nil {
		if nw.Labels[LabelManaged] != "true" || nw.Labels[LabelTenantID] != tenantID {
			return controlplane.Errorf(controlplane.EConflict, "network %s exists but was not created for tenant %s", name, tenantID)
		}
		return nil
	}
	if !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("docker: inspect network %s: %w", name, err)
	}
	labels := map[string]string{}
	for k, v := range d.opts.Labels {
		labels[k] = v
	}
	labels[LabelManaged], labels[LabelTenantID] = "true", tenantID
	return d.createTenantNetwork(ctx, name, labels) // a subnet of Options.SubnetPool (subnets.go)
}

// facts returns what the driver records about the container of cfg's cell.
func (d *Driver) facts(info container.InspectResponse, cfg cell.Config) controlplane.Cell {
	c := controlplane.Cell{Driver: DriverName, Address: d.address(info), ContainerID: info.ID,
		Database: cfg.Database, S3Prefix: cfg.S3Prefix}
	if info.State != nil && info.State.Running {
		c.StartedAt = parseTime(info.State.StartedAt)
	}
	return c
}

// address returns "host:port" of the container's published cell port, or "" when it has none
// (not running). An unspecified host address means the loopback. With Options.Network it is
// "<container name>:<ContainerPort>" while the container runs.
func (d *Driver) address(info container.InspectResponse) string {
	if d.opts.Network != "" {
		if info.State == nil || !info.State.Running {
			return ""
		}
		return net.JoinHostPort(strings.TrimPrefix(info.Name, "/"), strconv.Itoa(ContainerPort))
	}
	if info.NetworkSettings == nil {
		return ""
	}
	for _, b := range info.NetworkSettings.Ports[portKey] {
		if b.HostPort == "" {
			continue
		}
		host := b.HostIP
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			host = "127.0.0.1"
		}
		return net.JoinHostPort(host, b.HostPort)
	}
	return ""
}

// parseTime parses an engine timestamp; the zero time ("0001-01-01T00:00:00Z") and garbage are nil.
func parseTime(s string) *time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() <= 1 {
		return nil
	}
	t = t.UTC()
	return &t
}

// Stop implements controlplane.Driver: the engine sends SIGTERM, then SIGKILL after
// Options.StopTimeout, and the call returns once the container has stopped. A missing or stopped
// container is success. Errors: conflict (a newer control plane's container), the engine's errors.
func (d *Driver) Stop(ctx context.Context, tenantID string) error {
	if err := checkTenantID(tenantID); err != nil {
		return err
	}
	defer d.lockTenant(tenantID)()
	name := ContainerName(tenantID)
	info, err := d.cli.ContainerInspect(ctx, name)
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("docker: inspect %s: %w", name, err)
	}
	if err := d.checkFence(ctx, info); err != nil {
		return err
	}
	timeout := int((d.opts.StopTimeout + time.Second - 1) / time.Second)
	if err := d.cli.ContainerStop(ctx, info.ID, container.StopOptions{Timeout: &timeout}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("docker: stop %s: %w", name, err)
	}
	d.log.Info("cell stopped", attrTenantID, tenantID)
	return nil
}

// StopAll stops, in parallel, every cell this driver started (or found running in Start) and
// waits for them or ctx. Containers of other drivers on the same engine are left alone.
func (d *Driver) StopAll(ctx context.Context) {
	d.mu.Lock()
	ids := make([]string, 0, len(d.known))
	for id := range d.known {
		ids = append(ids, id)
	}
	d.mu.Unlock()
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.Stop(ctx, id); err != nil {
				d.log.Warn("stop cell", attrTenantID, id, "err", err.Error())
			}
		}()
	}
	wg.Wait()
}

// Status implements controlplane.Driver. The engine's states map to CellRunning (running or
// paused), CellRestarting (the restart policy is about to start it again), CellStopped (created,
// exited, dead, being removed) and CellAbsent (no container). Restarts is the engine's restart
// count since the container was last started through the API; LastExit describes the last exit
// while the container is stopped or waiting to be restarted (e.g. "exit code 137 (signal:
// killed)"); the engine forgets it once the container runs again.
func (d *Driver) Status(ctx context.Context, tenantID string) (controlplane.CellStatus, error) {
	st := controlplane.CellStatus{TenantID: tenantID, Driver: DriverName, State: controlplane.CellAbsent}
	if checkTenantID(tenantID) != nil {
		return st, nil
	}
	info, err := d.cli.ContainerInspect(ctx, ContainerName(tenantID))
	if cerrdefs.IsNotFound(err) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("docker: inspect %s: %w", ContainerName(tenantID), err)
	}
	st.ContainerID, st.Restarts, st.Address = info.ID, info.RestartCount, d.address(info)
	if info.Config != nil {
		st.Fence, _ = strconv.ParseInt(info.Config.Labels[LabelFence], 10, 64)
	}
	s := info.State
	switch {
	case s == nil:
		st.State = controlplane.CellStopped
	case s.Restarting:
		st.State = controlplane.CellRestarting
	case s.Running:
		st.State = controlplane.CellRunning
		st.StartedAt = parseTime(s.StartedAt)
	default:
		st.State = controlplane.CellStopped
	}
	if s != nil && (!s.Running || s.Restarting) {
		st.LastExit = exitText(s) // the engine keeps the exit code until the next start
	}
	return st, nil
}

// exitText describes how a container that is not running last exited ("" if it never ran or
// exited 0 without an error).
func exitText(s *container.State) string {
	var parts []string
	switch {
	case s.OOMKilled:
		parts = append(parts, fmt.Sprintf("exit code %d (OOM killed)", s.ExitCode))
	case s.ExitCode > 128 && s.ExitCode < 128+65:
		parts = append(parts, fmt.Sprintf("exit code %d (signal: %s)", s.ExitCode, syscall.Signal(s.ExitCode-128)))
	case s.ExitCode != 0:
		parts = append(parts, fmt.Sprintf("exit code %d", s.ExitCode))
	}
	if s.Error != "" {
		parts = append(parts, s.Error)
	}
	return strings.Join(parts, ": ")
}

// Logs implements controlplane.Driver through the engine's container logs (json-file or local
// log driver): the last lines lines of stdout and stderr, demultiplexed into one stream in the
// order the engine returns them. lines <= 0 means 100. A tenant without a container has no logs.
func (d *Driver) Logs(ctx context.Context, tenantID string, lines int) ([]byte, error) {
	if lines <= 0 {
		lines = 100
	}
	if checkTenantID(tenantID) != nil {
		return []byte{}, nil
	}
	rc, err := d.cli.ContainerLogs(ctx, ContainerName(tenantID), container.LogsOptions{
		ShowStdout: true, ShowStderr: true, Tail: strconv.Itoa(lines),
	})
	if cerrdefs.IsNotFound(err) {
		return []byte{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("docker: logs of %s: %w", ContainerName(tenantID), err)
	}
	defer rc.Close()
	var buf combined
	if _, err := stdcopy.StdCopy(&buf, &buf, rc); err != nil {
		return nil, fmt.Errorf("docker: logs of %s: %w", ContainerName(tenantID), err)
	}
	return buf.b, nil
}

// combined is the one destination of both demultiplexed streams (StdCopy writes from one
// goroutine, in stream order).
type combined struct{ b []byte }

func (w *combined) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

// Remove implements controlplane.Driver: it removes the tenant's container (killing it if it still
// runs) and its network, first disconnecting any other container joined to it (e.g. Traefik).
// Missing objects are success. Errors: conflict (a newer control plane's container), the engine's
// errors.
func (d *Driver) Remove(ctx context.Context, tenantID string) error {
	if err := checkTenantID(tenantID); err != nil {
		return err
	}
	defer d.lockTenant(tenantID)()
	name := ContainerName(tenantID)
	info, err := d.cli.ContainerInspect(ctx, name)
	switch {
	case cerrdefs.IsNotFound(err):
	case err != nil:
		return fmt.Errorf("docker: inspect %s: %w", name, err)
	default:
		if err := d.checkFence(ctx, info); err != nil {
			return err
		}
		if err := d.cli.ContainerRemove(ctx, info.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			if !strings.Contains(err.Error(), "already in progress") {
				return fmt.Errorf("docker: remove %s: %w", name, err)
			}
			if err := d.waitGone(ctx, info.ID); err != nil {
				return err
			}
		}
	}
	d.mu.Lock()
	delete(d.known, tenantID)
	d.mu.Unlock()
	netName := NetworkName(tenantID)
	nw, err := d.cli.NetworkInspect(ctx, netName, network.InspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("docker: inspect network %s: %w", netName, err)
	}
	if nw.Labels[LabelManaged] != "true" {
		return controlplane.Errorf(controlplane.EConflict, "network %s was not created by the driver; left alone", netName)
	}
	for id := range nw.Containers {
		if err := d.cli.NetworkDisconnect(ctx, nw.ID, id, true); err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("docker: disconnect %s from %s: %w", shortID(id), netName, err)
		}
	}
	if err := d.cli.NetworkRemove(ctx, nw.ID); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("docker: remove network %s: %w", netName, err)
	}
	d.log.Info("cell removed", attrTenantID, tenantID)
	return nil
}

// waitGone polls until the container id no longer exists (a removal by someone else is underway).
func (d *Driver) waitGone(ctx context.Context, id string) error {
	for {
		if _, err := d.cli.ContainerInspect(ctx, id); cerrdefs.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("docker: waiting for removal of %s: %w", shortID(id), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Managed returns the ids of the tenants that have a container or network labelled LabelManaged
// on the engine, sorted, e.g. to find cells the registry no longer knows.
func (d *Driver) Managed(ctx context.Context) ([]string, error) {
	f := filters.NewArgs(filters.Arg("label", LabelManaged+"=true"))
	seen := map[string]bool{}
	cs, err := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("docker: list containers: %w", err)
	}
	for _, c := range cs {
		seen[c.Labels[LabelTenantID]] = true
	}
	ns, err := d.cli.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("docker: list networks: %w", err)
	}
	for _, n := range ns {
		seen[n.Labels[LabelTenantID]] = true
	}
	delete(seen, "")
	ids := make([]string, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

var _ controlplane.ResourceLister = (*Driver)(nil)

// TenantResources implements controlplane.ResourceLister: every container
// (controlplane.ResourceContainer: cells and dedicated database servers), network
// (controlplane.ResourceNetwork) and volume (controlplane.ResourceVolume: dedicated databases'
// data) on the engine labelled LabelManaged with a LabelTenantID, whichever driver created it.
func (d *Driver) TenantResources(ctx context.Context) ([]controlplane.Resource, error) {
	f := filters.NewArgs(filters.Arg("label", LabelManaged+"=true"))
	out := []controlplane.Resource{}
	cs, err := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("docker: list containers: %w", err)
	}
	for _, c := range cs {
		name := c.ID
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		if id := c.Labels[LabelTenantID]; id != "" {
			out = append(out, controlplane.Resource{Kind: controlplane.ResourceContainer, Name: name, TenantID: id})
		}
	}
	ns, err := d.cli.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("docker: list networks: %w", err)
	}
	for _, n := range ns {
		if id := n.Labels[LabelTenantID]; id != "" {
			out = append(out, controlplane.Resource{Kind: controlplane.ResourceNetwork, Name: n.Name, TenantID: id})
		}
	}
	vs, err := d.tenantVolumes(ctx)
	if err != nil {
		return nil, err
	}
	return append(out, vs...), nil
}

// ResourceKinds implements controlplane.ResourceLister.
func (d *Driver) ResourceKinds() []string {
	return []string{controlplane.ResourceContainer, controlplane.ResourceNetwork, controlplane.ResourceVolume}
}
