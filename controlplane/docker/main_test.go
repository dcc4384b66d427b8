package docker_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"atende/cell"
	"atende/controlplane"
	"atende/controlplane/docker"
	"atende/controlplane/ferret"
	"atende/controlplane/s3bucket"
	"atende/controlplane/versity"
)

// envCellBin names a static cell binary to put in the test image instead of building
// ./cell/cmd/cell (e.g. when the tree does not build at the moment).
const envCellBin = "ATENDE_TEST_CELL_BIN"

// labelRun marks every container, network and image of one test run, for the cleanup.
const labelRun = "atende.test"

// engine is what TestMain set up: the engine client, the images it built, and the embedded
// MongoDB (FerretDB) and S3 (versitygw) servers listening on the default bridge's gateway.
var engine struct {
	skip       string // why the tests skip; "" when the engine answered
	cli        *client.Client
	run        string // this run's labelRun value
	image      string // the cell image built from deploy/cell.Dockerfile
	probe      string // the network probe image (testdata/probe)
	gateway    string // the host's address on docker0, e.g. "172.17.0.1"
	mongoAddr  string // FerretDB's "gateway:port"
	s3Addr     string // versitygw's "gateway:port"
	s3Access   string
	s3Secret   string
	bucket     string
	cellSource string // how the cell binary was obtained, for the log
	closers    []func()
}

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

// runTests sets up the engine fixtures, runs the tests and removes everything labelled with
// this run, whatever happened.
func runTests(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		engine.skip = "-short: the docker driver tests build images and run containers (about a minute)"
		return m.Run()
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = cli.Ping(ctx)
		cancel()
	}
	if err != nil {
		host := client.DefaultDockerHost
		if cli != nil {
			host = cli.DaemonHost()
		}
		engine.skip = fmt.Sprintf("Docker engine not reachable at %s (%v): the docker driver tests need a local engine", host, err)
		return m.Run()
	}
	engine.cli = cli
	engine.run = randomHex(6)
	defer cleanupRun()
	if err := setUp(); err != nil {
		fmt.Fprintln(os.Stderr, "docker tests: set-up failed:", err)
		return 1
	}
	return m.Run()
}

// setUp builds the images and starts FerretDB and versitygw where containers reach them.
func setUp() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_, self, _, _ := runtime.Caller(0)
	pkgDir := filepath.Dir(self)
	root := filepath.Join(pkgDir, "..", "..")
	tmp, err := os.MkdirTemp("", "atende-docker-test-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	cellBin := os.Getenv(envCellBin)
	engine.cellSource = envCellBin + "=" + cellBin
	if cellBin == "" {
		cellBin = filepath.Join(tmp, "cell")
		engine.cellSource = "go build ./cell/cmd/cell"
		if err := goBuild(root, "./cell/cmd/cell", cellBin); err != nil {
			return err
		}
	}
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return fmt.Errorf("go env GOROOT: %w", err)
	}
	labels := map[string]string{labelRun: engine.run}
	engine.image = "atende/cell:test-" + engine.run
	if _, err := docker.BuildImage(ctx, engine.cli, docker.BuildContext{
		Dockerfile: "deploy/cell.Dockerfile",
		Files: map[string]string{
			"deploy/cell.Dockerfile":  filepath.Join(root, "deploy", "cell.Dockerfile"),
			"bin/cell":                cellBin,
			"bin/ca-certificates.crt": "/etc/ssl/certs/ca-certificates.crt",
			"bin/zoneinfo.zip":        filepath.Join(strings.TrimSpace(string(goroot)), "lib", "time", "zoneinfo.zip"),
		},
	}, engine.image, labels); err != nil {
		return err
	}
	probeBin := filepath.Join(tmp, "probe")
	if err := goBuild(filepath.Join(pkgDir, "testdata", "probe"), ".", probeBin); err != nil {
		return err
	}
	probeDockerfile := filepath.Join(tmp, "Dockerfile")
	if err := os.WriteFile(probeDockerfile, []byte("FROM scratch\nCOPY probe /probe\nUSER 65534:65534\nENTRYPOINT [\"/probe\"]\n"), 0o644); err != nil {
		return err
	}
	engine.probe = "atende/probe:test-" + engine.run
	if _, err := docker.BuildImage(ctx, engine.cli, docker.BuildContext{
		Dockerfile: "Dockerfile", Files: map[string]string{"Dockerfile": probeDockerfile, "probe": probeBin},
	}, engine.probe, labels); err != nil {
		return err
	}

	d, err := docker.New(ctx, docker.Options{Client: engine.cli, Image: engine.image})
	if err != nil {
		return err
	}
	if engine.gateway, err = d.HostGateway(ctx); err != nil {
		return err
	}
	// The services listen on docker0's address: reachable from every cell network, not from
	// outside the host.
	data, err := os.MkdirTemp("", "atende-docker-services-")
	if err != nil {
		return err
	}
	engine.closers = append(engine.closers, func() { os.RemoveAll(data) })
	mongo, err := ferret.Start(filepath.Join(data, "mongo"), net.JoinHostPort(engine.gateway, "0"), nil)
	if err != nil {
		return err
	}
	engine.closers = append(engine.closers, mongo.Close)
	engine.mongoAddr = strings.TrimSuffix(strings.TrimPrefix(mongo.URI(), "mongodb://"), "/")
	engine.s3Access, engine.s3Secret, engine.bucket = "test-"+randomHex(4), randomHex(16), "atende"
	s3, err := versity.Start(filepath.Join(data, "s3"), net.JoinHostPort(engine.gateway, "0"), engine.s3Access, engine.s3Secret)
	if err != nil {
		return err
	}
	engine.closers = append(engine.closers, s3.Close)
	engine.s3Addr = strings.TrimPrefix(s3.Endpoint(), "http://")
	return s3bucket.EnsureBucket(ctx, s3bucket.NewClient(s3.Endpoint(), versity.Region, engine.s3Access, engine.s3Secret), engine.bucket)
}

// goBuild builds a static binary of pkg (relative to dir) into out.
func goBuild(dir, pkg, out string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// cleanupRun removes the containers, networks and images labelled with this run, then stops the
// services and removes their files.
func cleanupRun() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	removeLabelled(ctx, labelRun+"="+engine.run)
	for i := len(engine.closers) - 1; i >= 0; i-- {
		engine.closers[i]()
	}
	for _, img := range []string{engine.image, engine.probe} {
		if img != "" {
			_, _ = engine.cli.ImageRemove(ctx, img, image.RemoveOptions{Force: true, PruneChildren: true})
		}
	}
}

// removeLabelled force-removes every container, then every network, carrying label ("k=v").
func removeLabelled(ctx context.Context, label string) {
	f := filters.NewArgs(filters.Arg("label", label))
	if cs, err := engine.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f}); err == nil {
		for _, c := range cs {
			_ = engine.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
		}
	}
	if ns, err := engine.cli.NetworkList(ctx, network.ListOptions{Filters: f}); err == nil {
		for _, n := range ns {
			_ = engine.cli.NetworkRemove(ctx, n.ID)
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// requireEngine skips the test when TestMain found no engine.
func requireEngine(tb testing.TB) {
	tb.Helper()
	if engine.skip != "" {
		tb.Skip(engine.skip)
	}
}

// newDriver returns a driver for the test image with this run's label, 1 s health checks and
// opts' other settings. It removes the tenants' cells the test lists in cleanup (and everything
// of the test's tenants by label) when the test ends.
func newDriver(tb testing.TB, opts docker.Options) *docker.Driver {
	tb.Helper()
	opts.Client, opts.Image = engine.cli, engine.image
	opts.Labels = map[string]string{labelRun: engine.run}
	if opts.HealthInterval == 0 {
		opts.HealthInterval = time.Second
	}
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	d, err := docker.New(context.Background(), opts)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// newTenant returns a new tenant id whose containers and networks are removed (by label) when
// the test ends, even if it fails.
func newTenant(tb testing.TB) string {
	id := controlplane.NewTenantID()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		removeLabelled(ctx, docker.LabelTenantID+"="+id)
	})
	return id
}

// cellConfig returns a complete configuration for tenant id's cell against the test's services.
// MongoDB is reached through host.docker.internal (the host-gateway entry the driver adds), S3
// through the gateway's address.
func cellConfig(id string) cell.Config {
	_, signing, _ := ed25519.GenerateKey(rand.Reader)
	cpKey, _, _ := ed25519.GenerateKey(rand.Reader)
	_, mongoPort, _ := net.SplitHostPort(engine.mongoAddr)
	key := "t" + id[:8]
	return cell.Config{
		TenantID: id, TenantKey: key, TenantName: "Test " + key,
		Hosts: []string{key + ".localhost"}, PublicURL: "http://" + key + ".localhost:8080",
		MongoURI: "mongodb://host.docker.internal:" + mongoPort + "/", Database: controlplane.DatabaseName(id),
		S3Endpoint: "http://" + engine.s3Addr, S3Region: versity.Region, S3Bucket: engine.bucket,
		S3Prefix: controlplane.S3Prefix(id), S3AccessKey: engine.s3Access, S3SecretKey: engine.s3Secret,
		SigningKey: signing, SigningKeyID: "k-" + randomHex(4), ControlPlaneKey: cpKey, LogLevel: "info",
	}
}

// healthClient does not reuse connections: every probe is a fresh GET, like the supervisor's.
var healthClient = &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// healthzOK reports whether GET http://addr/healthz answers 200.
func healthzOK(addr string) bool {
	if addr == "" {
		return false
	}
	resp, err := healthClient.Get("http://" + addr + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// waitHealthz polls the tenant's current address (from Status) every 20 ms until /healthz
// answers 200 and returns that address; it fails the test after timeout.
func waitHealthz(tb testing.TB, d *docker.Driver, id string, timeout time.Duration) string {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	var st controlplane.CellStatus
	for time.Now().Before(deadline) {
		st, _ = d.Status(context.Background(), id)
		if st.State == controlplane.CellRunning && healthzOK(st.Address) {
			return st.Address
		}
		time.Sleep(20 * time.Millisecond)
	}
	logs, _ := d.Logs(context.Background(), id, 20)
	tb.Fatalf("cell of %s never answered /healthz within %s; status %+v; logs:\n%s", id, timeout, st, logs)
	return ""
}

// waitDockerHealth waits until the engine's HEALTHCHECK reports the container healthy.
func waitDockerHealth(tb testing.TB, id string, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	var status string
	for time.Now().Before(deadline) {
		info, err := engine.cli.ContainerInspect(context.Background(), docker.ContainerName(id))
		if err == nil && info.State != nil && info.State.Health != nil {
			if status = info.State.Health.Status; status == container.Healthy {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatalf("container of %s not healthy for the engine within %s (health %q)", id, timeout, status)
}

// inspect returns the tenant's container as the engine sees it.
func inspect(tb testing.TB, id string) container.InspectResponse {
	tb.Helper()
	info, err := engine.cli.ContainerInspect(context.Background(), docker.ContainerName(id))
	if err != nil {
		tb.Fatal(err)
	}
	return info
}

// probe runs the probe image in the network namespace of the container cid and reports whether
// it connected to addr, with the probe's output.
func probe(tb testing.TB, cid, addr string) (bool, string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := engine.cli.ContainerCreate(ctx, &container.Config{Image: engine.probe, Cmd: []string{addr}, Labels: map[string]string{labelRun: engine.run}},
		&container.HostConfig{NetworkMode: container.NetworkMode("container:" + cid)}, nil, nil, "")
	if err != nil {
		tb.Fatal(err)
	}
	defer engine.cli.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true})
	waitc, errc := engine.cli.ContainerWait(ctx, c.ID, container.WaitConditionNextExit)
	if err := engine.cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		tb.Fatal(err)
	}
	var code int64
	select {
	case res := <-waitc:
		code = res.StatusCode
	case err := <-errc:
		tb.Fatal(err)
	}
	rc, err := engine.cli.ContainerLogs(ctx, c.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		tb.Fatal(err)
	}
	defer rc.Close()
	var out strings.Builder
	_, _ = stdcopy.StdCopy(&out, &out, rc)
	return code == 0, strings.TrimSpace(out.String())
}

// gone reports whether err is the engine's not-found.
func gone(err error) bool { return err != nil && cerrdefs.IsNotFound(err) }
