package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"atende/controlplane/docker"
	"atende/controlplane/s3bucket"
)

// labelE2ERun marks the images one docker test builds, for its cleanup. The control plane labels
// what it creates for a tenant with atende.tenantId, by which the tests remove it.
const labelE2ERun = "atende.e2e"

// dockerRig is what a docker-driver test of the real stack needs: the engine and the cell and
// database-server images built from this tree (FROM scratch, never pulled), tagged for the test
// and removed when it ends, with everything of the tenants it created.
type dockerRig struct {
	cli                   *client.Client
	run                   string
	cellImage, mongoImage string
}

// newDockerRig builds the images, or skips when no engine answers.
func newDockerRig(tb testing.TB) *dockerRig {
	tb.Helper()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = cli.Ping(ctx)
		cancel()
	}
	if err != nil {
		tb.Skipf("no Docker engine: %v", err)
	}
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	r := &dockerRig{cli: cli, run: hex.EncodeToString(b)}
	r.cellImage, r.mongoImage = "atende/cell:e2e-"+r.run, "atende/mongo:e2e-"+r.run
	tb.Cleanup(func() {
		for _, img := range []string{r.cellImage, r.mongoImage} {
			_, _ = cli.ImageRemove(context.Background(), img, image.RemoveOptions{Force: true, PruneChildren: true})
		}
	})
	tmp := tb.TempDir()
	build := exec.Command("go", "build", "-trimpath", "-o", tmp+"/", "../controlplane/cmd/mongoserver")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		tb.Fatalf("go build mongoserver: %v\n%s", err, out)
	}
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	labels := map[string]string{labelE2ERun: r.run}
	if _, err := docker.BuildImage(ctx, cli, docker.BuildContext{Dockerfile: "deploy/cell.Dockerfile", Files: map[string]string{
		"deploy/cell.Dockerfile":  "../deploy/cell.Dockerfile",
		"bin/cell":                filepath.Join(binDir, "cell"),
		"bin/ca-certificates.crt": "/etc/ssl/certs/ca-certificates.crt",
		"bin/zoneinfo.zip":        filepath.Join(strings.TrimSpace(string(goroot)), "lib", "time", "zoneinfo.zip"),
	}}, r.cellImage, labels); err != nil {
		tb.Fatal(err)
	}
	if _, err := docker.BuildImage(ctx, cli, docker.BuildContext{Dockerfile: "deploy/mongo.Dockerfile", Files: map[string]string{
		"deploy/mongo.Dockerfile": "../deploy/mongo.Dockerfile",
		"bin/mongoserver":         filepath.Join(tmp, "mongoserver"),
		"bin/data/":               "",
	}}, r.mongoImage, labels); err != nil {
		tb.Fatal(err)
	}
	return r
}

// env is the environment of a control plane with the docker driver and the rig's images.
func (r *dockerRig) env() []string {
	return []string{"ATENDE_SEED_DEV=false", "ATENDE_DRIVER=docker", "ATENDE_CELL_IMAGE=" + r.cellImage, "ATENDE_MONGO_IMAGE=" + r.mongoImage}
}

// cleanupTenant removes, when the test ends, every container, network and volume labelled with
// tenant id (what the control plane created for it, if the test did not see it removed). It
// stops the control plane s first: a running one would start a live tenant's cell again.
func (r *dockerRig) cleanupTenant(tb testing.TB, s *stack, id string) {
	tb.Cleanup(func() {
		s.stop()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		f := filters.NewArgs(filters.Arg("label", docker.LabelTenantID+"="+id))
		if cs, err := r.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f}); err == nil {
			for _, c := range cs {
				_ = r.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
			}
		}
		if ns, err := r.cli.NetworkList(ctx, network.ListOptions{Filters: f}); err == nil {
			for _, n := range ns {
				_ = r.cli.NetworkRemove(ctx, n.ID)
			}
		}
		if vs, err := r.cli.VolumeList(ctx, volume.ListOptions{Filters: f}); err == nil {
			for _, v := range vs.Volumes {
				_ = r.cli.VolumeRemove(ctx, v.Name, true)
			}
		}
	})
}

// tieredTenant is a created tenant with its tier and stack, as the API answers it.
type tieredTenant struct {
	tenant
	Tier  string `json:"tier"`
	Stack struct {
		Done           int    `json:"provisionDone"`
		DatabaseAuth   string `json:"databaseAuth"`
		Network        string `json:"network"`
		DatabaseServer string `json:"databaseServer"`
		DatabaseVolume string `json:"databaseVolume"`
		DatabaseURI    string `json:"databaseUri"`
		Bucket         string `json:"bucket"`
	} `json:"stack"`
}

// createTiered creates tenant key on tier through the API (enterprise plan) and waits for the
// first 200 on its host through the edge and for the registry to say live. It returns the tenant
// and the time from the 202 to that first 200. Its docker objects are removed when the test ends.
func (s *stack) createTiered(r *dockerRig, key, tier string) (tieredTenant, time.Duration) {
	s.t.Helper()
	var tn tieredTenant
	st, body := s.cp("POST", "/api/tenants", map[string]any{"key": key, "name": "T " + key, "adminEmail": "admin@" + key + ".test", "plan": "enterprise", "tier": tier}, &tn)
	if st != 202 {
		s.t.Fatalf("create %s: %d %s", key, st, body)
	}
	accepted := time.Now()
	if r != nil {
		r.cleanupTenant(s.t, s, tn.ID)
	}
	took := s.waitServing(key, accepted, 180*time.Second) // generous: a loaded engine is slow
	s.waitState(tn.ID, "live", 30*time.Second)
	return tn, took
}

// waitServing polls GET /api/settings/public on the tenant's host every 10 ms until it answers
// 200 and returns the time since from; it fails the test after timeout.
func (s *stack) waitServing(key string, from time.Time, timeout time.Duration) time.Duration {
	s.t.Helper()
	for {
		req, _ := http.NewRequest("GET", s.edge+"/api/settings/public", nil)
		req.Host = s.host(key)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return time.Since(from)
			}
		}
		if time.Since(from) > timeout {
			var events any
			s.cp("GET", "/api/tenants/"+key+"/events", nil, &events) // decodes whatever shape
			s.t.Fatalf("tenant %s not serving %s after create; events %v", key, timeout, events)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitState polls the tenant until its state is want and returns it; it fails after timeout.
func (s *stack) waitState(id, want string, timeout time.Duration) tieredTenant {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var got tieredTenant
		s.cp("GET", "/api/tenants/"+id, nil, &got)
		if got.State == want {
			return got
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("tenant %s is %q, not %q, after %s", id, got.State, want, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runtimeInfo is the control plane's runtime.json: where its embedded services listen.
func (s *stack) runtimeInfo() (mongoURI, s3Endpoint string) {
	s.t.Helper()
	var rt struct{ Mongo, S3 string }
	data, err := os.ReadFile(filepath.Join(s.dataDir, "runtime.json"))
	if err != nil || json.Unmarshal(data, &rt) != nil {
		s.t.Fatalf("runtime.json: %v", err)
	}
	return rt.Mongo, rt.S3
}

// rootS3 returns an S3 client with the embedded gateway's root credentials.
func (s *stack) rootS3() *s3.Client {
	s.t.Helper()
	var creds struct{ AccessKey, SecretKey string }
	data, err := os.ReadFile(filepath.Join(s.dataDir, "s3-credentials.json"))
	if err != nil || json.Unmarshal(data, &creds) != nil {
		s.t.Fatalf("s3-credentials.json: %v", err)
	}
	_, endpoint := s.runtimeInfo()
	return s3bucket.NewClient(endpoint, "us-east-1", creds.AccessKey, creds.SecretKey)
}

// mongoCount counts the documents of collection in database db on the server at uri matching f.
func mongoCount(tb testing.TB, uri, db, collection string, f bson.D) int64 {
	tb.Helper()
	c, err := mongo.Connect(options.Client().ApplyURI(uri).SetTimeout(10 * time.Second))
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Disconnect(context.Background())
	n, err := c.Database(db).Collection(collection).CountDocuments(context.Background(), f)
	if err != nil {
		tb.Fatalf("count %s.%s on %s: %v", db, collection, uri, err)
	}
	return n
}

// mongoHasDatabase reports whether the server at uri has database db.
func mongoHasDatabase(tb testing.TB, uri, db string) bool {
	tb.Helper()
	c, err := mongo.Connect(options.Client().ApplyURI(uri).SetTimeout(10 * time.Second))
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Disconnect(context.Background())
	names, err := c.ListDatabaseNames(context.Background(), bson.D{})
	if err != nil {
		tb.Fatal(err)
	}
	return slices.Contains(names, db)
}

// TestDedicatedTenantDocker creates a dedicated tenant on the docker driver against the real
// engine and checks its whole stack: the tenant is live through the edge and its chat API works
// (login, visitor chat, accept, message); its data is in its own database server container (not
// on the shared server) on its own network with its cell, its bucket exists; a shared tenant on
// the same control plane records that the embedded FerretDB has no database users. Deleting the
// dedicated tenant removes its containers, network, volume and bucket, and the sweep is empty.
func TestDedicatedTenantDocker(t *testing.T) {
	r := newDockerRig(t)
	s := startStack(t, r.env()...)
	ded, took := s.createTiered(r, "dedi", "dedicated")
	t.Logf("dedicated tenant: first 200 on its host %v after the 202", took)
	shared, tookShared := s.createTiered(r, "shar", "shared")
	t.Logf("shared tenant (docker driver): first 200 on its host %v after the 202", tookShared)
	id := ded.ID

	got := s.waitState(id, "live", time.Second)
	if got.Tier != "dedicated" || got.Stack.Done != 3 || got.Stack.Network != docker.NetworkName(id) ||
		got.Stack.DatabaseServer != docker.DatabaseContainerName(id) || got.Stack.DatabaseVolume != docker.DatabaseVolumeName(id) ||
		got.Stack.Bucket != "atende-t-"+id || got.Stack.DatabaseURI != "mongodb://atende-mongo-"+id+":27017/" {
		t.Fatalf("dedicated tenant as recorded: %+v", got)
	}
	if sh := s.waitState(shared.ID, "live", time.Second); sh.Tier != "shared" || sh.Stack.DatabaseAuth != "unsupported" || sh.Stack.Done != 1 {
		t.Fatalf("shared tenant as recorded: %+v (want the database-user fallback recorded)", sh)
	}
	var events struct{ Events []struct{ Reason string } }
	s.cp("GET", "/api/tenants/"+id+"/events", nil, &events)
	var reasons []string
	for _, e := range events.Events {
		reasons = append(reasons, e.Reason)
	}
	for _, want := range []string{"provision 1/3: network", "provision 2/3: database server", "provision 3/3: bucket"} {
		if !slices.ContainsFunc(reasons, func(r string) bool { return strings.HasPrefix(r, want) }) {
			t.Errorf("no event %q among %q", want, reasons)
		}
	}

	// The chat API through the edge.
	admin := s.login("dedi", ded.Admin.Email, ded.Admin.Password)
	_, c := s.visitor("dedi", "hello from a dedicated visitor")
	if st, body := s.on("dedi", "POST", "/api/chat/"+c.ID+"/accept", admin.AccessToken, nil, nil); st != 200 {
		t.Fatalf("accept: %d %s", st, body)
	}
	const reply = "answer stored on the dedicated server"
	if st, body := s.on("dedi", "POST", "/api/messages", admin.AccessToken, map[string]any{"chatId": c.ID, "body": reply, "clientMsgId": "a1"}, nil); st != 201 && st != 200 {
		t.Fatalf("message: %d %s", st, body)
	}

	// The data is on the tenant's own server, reached here on the tenant's network (this host is
	// on every bridge), and not on the shared one.
	ctx := context.Background()
	mongoInfo, err := r.cli.ContainerInspect(ctx, docker.DatabaseContainerName(id))
	if err != nil {
		t.Fatal(err)
	}
	ep := mongoInfo.NetworkSettings.Networks[docker.NetworkName(id)]
	if ep == nil || len(mongoInfo.NetworkSettings.Networks) != 1 || mongoInfo.Config.Labels[docker.LabelTenantID] != id ||
		mongoInfo.Config.Labels[docker.LabelManaged] != "true" || len(mongoInfo.HostConfig.PortBindings) != 0 {
		t.Fatalf("database container: networks %v, labels %v, ports %v", mongoInfo.NetworkSettings.Networks, mongoInfo.Config.Labels, mongoInfo.HostConfig.PortBindings)
	}
	dedicatedURI := "mongodb://" + net.JoinHostPort(ep.IPAddress, "27017") + "/?directConnection=true"
	if n := mongoCount(t, dedicatedURI, "t_"+id, "messages", bson.D{{Key: "tenantId", Value: id}, {Key: "body", Value: reply}}); n != 1 {
		t.Errorf("the reply is %d times in t_%s on the dedicated server, want 1", n, id)
	}
	sharedURI, _ := s.runtimeInfo()
	if mongoHasDatabase(t, sharedURI, "t_"+id) {
		t.Errorf("the shared server has a database t_%s", id)
	}
	if !mongoHasDatabase(t, sharedURI, "t_"+shared.ID) {
		t.Errorf("the shared tenant's database is not on the shared server")
	}
	cellInfo, err := r.cli.ContainerInspect(ctx, docker.ContainerName(id))
	if err != nil {
		t.Fatal(err)
	}
	if nets := cellInfo.NetworkSettings.Networks; len(nets) != 1 || nets[docker.NetworkName(id)] == nil {
		t.Errorf("cell networks %v, want only %s", nets, docker.NetworkName(id))
	}
	if env := strings.Join(cellInfo.Config.Env, "\n"); !strings.Contains(env, "mongodb://atende-mongo-"+id+":27017/") || !strings.Contains(env, "atende-t-"+id) {
		t.Errorf("the cell is not configured with its own server and bucket")
	}
	s3c := s.rootS3()
	if _, err := s3c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("atende-t-" + id)}); err != nil {
		t.Errorf("dedicated bucket: %v", err)
	}

	// Deletion removes the whole stack; the sweep finds nothing.
	if st, body := s.cp("DELETE", "/api/tenants/"+id+"?now=true", nil, nil); st != 202 {
		t.Fatalf("delete: %d %s", st, body)
	}
	s.waitState(id, "deleted", 60*time.Second)
	for _, name := range []string{docker.ContainerName(id), docker.DatabaseContainerName(id)} {
		if _, err := r.cli.ContainerInspect(ctx, name); err == nil {
			t.Errorf("container %s still exists", name)
		}
	}
	if _, err := r.cli.NetworkInspect(ctx, docker.NetworkName(id), network.InspectOptions{}); err == nil {
		t.Errorf("network %s still exists", docker.NetworkName(id))
	}
	if _, err := r.cli.VolumeInspect(ctx, docker.DatabaseVolumeName(id)); err == nil {
		t.Errorf("volume %s still exists", docker.DatabaseVolumeName(id))
	}
	if _, err := s3c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("atende-t-" + id)}); err == nil {
		t.Errorf("bucket atende-t-%s still exists", id)
	}
	s.cp("GET", "/api/tenants/"+id+"/events", nil, &events)
	t.Logf("teardown events of the dedicated tenant:")
	for _, e := range events.Events {
		if strings.HasPrefix(e.Reason, "teardown") {
			t.Logf("  %s", e.Reason)
		}
	}
	var sweep struct {
		Kinds   []string         `json:"kinds"`
		Orphans []map[string]any `json:"orphans"`
	}
	if st, body := s.cp("GET", "/api/sweep", nil, &sweep); st != 200 {
		t.Fatalf("sweep: %d %s", st, body)
	}
	for _, k := range []string{"bucket", "volume", "container", "network", "credentials"} {
		if !slices.Contains(sweep.Kinds, k) {
			t.Errorf("the sweep does not look at %s (kinds %v)", k, sweep.Kinds)
		}
	}
	var ours []map[string]any
	for _, o := range sweep.Orphans {
		if fmt.Sprint(o["tenantId"]) == id || fmt.Sprint(o["tenantId"]) == shared.ID {
			ours = append(ours, o)
		}
	}
	if len(ours) != 0 {
		t.Errorf("the sweep lists orphans of this test's tenants: %v", ours)
	}
}

// restartStack starts bin/controlplane again on old's data directory and ports (after old was
// killed) and waits for "atende: ready". The new stack is stopped when the test ends.
func restartStack(t testing.TB, old *stack, extraEnv ...string) *stack {
	t.Helper()
	s := &stack{t: t, dataDir: old.dataDir, api: old.api, edge: old.edge, port: old.port, logs: &lockedBuffer{}}
	apiPort := strings.TrimPrefix(old.api, "http://127.0.0.1:")
	s.cmd = exec.Command(filepath.Join(binDir, "controlplane"))
	s.cmd.Env = append(os.Environ(),
		"ATENDE_DATA_DIR="+s.dataDir, "ATENDE_API_ADDR=127.0.0.1:"+apiPort, "ATENDE_EDGE_ADDR=127.0.0.1:"+s.port,
		"ATENDE_CELL_BIN="+filepath.Join(binDir, "cell"), "ATENDE_LOG_LEVEL=warn")
	s.cmd.Env = append(s.cmd.Env, extraEnv...)
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(s.logs.String(), "atende: ready") {
		if time.Now().After(deadline) {
			t.Fatalf("control plane not ready after a restart; output:\n%s", s.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	tok, err := os.ReadFile(filepath.Join(s.dataDir, "superadmin.token"))
	if err != nil {
		t.Fatal(err)
	}
	s.token = strings.TrimSpace(string(tok))
	return s
}

// TestDedicatedProvisioningSurvivesACrash kills the control plane (SIGKILL, whole process group)
// right after a dedicated tenant's first provisioning action is recorded, while the next one (the
// database server) is under way, and starts it again on the same data: the new control plane
// takes the tenant over once the dead one's lease lapses, finds what was already created ("already
// exists" is success), finishes the provisioning without a second server, volume or network, and
// the tenant goes live and serves.
func TestDedicatedProvisioningSurvivesACrash(t *testing.T) {
	r := newDockerRig(t)
	s := startStack(t, r.env()...)
	var tn tieredTenant
	if st, body := s.cp("POST", "/api/tenants", map[string]any{"key": "crash", "name": "Crash", "adminEmail": "admin@crash.test", "tier": "dedicated"}, &tn); st != 202 {
		t.Fatalf("create: %d %s", st, body)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		var events struct{ Events []struct{ Reason string } }
		s.cp("GET", "/api/tenants/"+tn.ID+"/events", nil, &events)
		if slices.ContainsFunc(events.Events, func(e struct{ Reason string }) bool { return strings.HasPrefix(e.Reason, "provision 1/3") }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no provisioning event within 60 s: %+v", events)
		}
		time.Sleep(5 * time.Millisecond)
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	_ = s.cmd.Wait()
	killedAt := time.Now()
	s2 := restartStack(t, s, r.env()...)
	r.cleanupTenant(t, s2, tn.ID)
	took := s2.waitServing("crash", killedAt, 90*time.Second)
	got := s2.waitState(tn.ID, "live", 30*time.Second)
	t.Logf("live and serving %v after the kill (a lease the dead control plane held lapses after 15 s)", took)
	if got.Stack.Done != 3 || got.Stack.DatabaseServer == "" || got.Stack.Bucket == "" {
		t.Fatalf("stack after the crash: %+v", got.Stack)
	}
	ctx := context.Background()
	f := filters.NewArgs(filters.Arg("label", docker.LabelTenantID+"="+tn.ID))
	cs, err := r.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range cs {
		names = append(names, strings.TrimPrefix(c.Names[0], "/"))
	}
	slices.Sort(names)
	if want := []string{docker.ContainerName(tn.ID), docker.DatabaseContainerName(tn.ID)}; !slices.Equal(names, want) {
		t.Errorf("containers of the tenant %v, want %v", names, want)
	}
	vs, _ := r.cli.VolumeList(ctx, volume.ListOptions{Filters: f})
	ns, _ := r.cli.NetworkList(ctx, network.ListOptions{Filters: f})
	if len(vs.Volumes) != 1 || len(ns) != 1 {
		t.Errorf("%d volumes and %d networks for the tenant, want 1 and 1", len(vs.Volumes), len(ns))
	}
	admin := s2.login("crash", tn.Admin.Email, tn.Admin.Password)
	if admin.AccessToken == "" {
		t.Fatal("no access token")
	}
}
