package supervisor_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.mongodb.org/mongo-driver/v2/bson"

	"atende/controlplane"
	"atende/controlplane/ferret"
	"atende/controlplane/mongodb"
	"atende/controlplane/process"
	"atende/controlplane/s3bucket"
	"atende/controlplane/supervisor"
	"atende/controlplane/versity"
)

// Root credentials and bucket of the stack's embedded S3 gateway.
const (
	rootKey    = "rootkey"
	rootSecret = "rootsecret12345"
	bucket     = "atende"
)

// stack is what the control planes of a test share, as on a real deployment: an embedded FerretDB
// holding the registry and the tenants' databases, an embedded S3 gateway with per-tenant
// credentials, and the directory of process-driver cells.
type stack struct {
	t        *testing.T
	mongoURI string
	store    *mongodb.Store // for the test's own reads and seeding
	s3       *versity.Server
	s3c      *s3.Client
	access   *versity.TenantAccess
	cellsDir string
}

func newStack(t *testing.T) *stack {
	t.Helper()
	fsrv, err := ferret.Start(t.TempDir(), "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fsrv.Close)
	ssrv, err := versity.Start(t.TempDir(), "127.0.0.1:0", rootKey, rootSecret)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ssrv.Close)
	st := &stack{t: t, mongoURI: fsrv.URI(), s3: ssrv, access: ssrv.TenantAccess(bucket), cellsDir: t.TempDir()}
	st.s3c = s3bucket.NewClient(ssrv.Endpoint(), versity.Region, rootKey, rootSecret)
	if err := s3bucket.EnsureBucket(context.Background(), st.s3c, bucket); err != nil {
		t.Fatal(err)
	}
	st.store = st.openStore()
	return st
}

// openStore opens a registry store with a client of its own (one per control plane).
func (st *stack) openStore() *mongodb.Store {
	st.t.Helper()
	s, err := mongodb.Open(context.Background(), st.mongoURI, "registry_test")
	if err != nil {
		st.t.Fatal(err)
	}
	st.t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// node is one running control plane: a supervisor with its own registry client and, unless it
// shares one, its own process driver.
type node struct {
	sup    *supervisor.Supervisor
	store  *mongodb.Store
	driver *process.Driver
	routes *routeLog
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// start runs a control plane on the stack: the registry, the tenants' databases and object
// prefixes, per-tenant object-store credentials, and a process driver on the stack's cell
// directory (shared, if given, else its own). Options default to a 50 ms tick and a 600 ms lease;
// configure changes them. The node is stopped at the end of the test.
func (st *stack) start(shared *process.Driver, configure ...func(*supervisor.Options)) *node {
	st.t.Helper()
	n := &node{store: st.openStore(), routes: &routeLog{}, done: make(chan error, 1), driver: shared}
	var sup *supervisor.Supervisor
	if n.driver == nil {
		d, err := process.New(process.Options{Binary: fakeBin, Dir: st.cellsDir,
			OnAddressChange: func(id, addr string) { sup.CellAddressChanged(id, addr) }})
		if err != nil {
			st.t.Fatal(err)
		}
		n.driver = d
	}
	opts := supervisor.Options{
		Store: n.store, Driver: n.driver,
		Platform: supervisor.Platform{Domain: "localhost", PublicPort: 8080, MongoURI: st.mongoURI,
			S3Endpoint: st.s3.Endpoint(), S3Region: versity.Region, S3Bucket: bucket, S3AccessKey: rootKey, S3SecretKey: rootSecret},
		DataRemovers: []controlplane.DataRemover{
			mongodb.TenantDatabases{Client: n.store.Client()},
			s3bucket.TenantPrefixes{Client: st.s3c, Bucket: bucket},
		},
		ObjectStoreIAM: st.access, OnRoutes: n.routes.publish,
		Tick: 50 * time.Millisecond, LeaseTTL: 600 * time.Millisecond, HealthTimeout: 10 * time.Second,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	for _, c := range configure {
		c(&opts)
	}
	var err error
	sup, err = supervisor.New(opts)
	if err != nil {
		st.t.Fatal(err)
	}
	n.sup = sup
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() { n.done <- sup.Run(ctx) }()
	st.t.Cleanup(func() { n.stop() })
	return n
}

// stop cancels the node's supervisor, waits for Run to return and stops its cells (as the end of
// its process would: cells die with their control plane). It returns Run's error.
func (n *node) stop() error {
	n.once.Do(func() {
		n.cancel()
		select {
		case n.err = <-n.done:
		case <-time.After(30 * time.Second):
			n.err = errors.New("supervisor did not stop")
		}
		n.driver.StopAll(context.Background())
	})
	return n.err
}

// crashed waits for the node's supervisor to crash at a checkpoint, then ends the node like a
// dead process: its cells die with it, its leases are left to lapse.
func (n *node) crashed(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case err := <-n.done:
		if !errors.Is(err, supervisor.ErrCrashed) {
			t.Fatalf("supervisor ended with %v, want a crash", err)
		}
		n.done <- err
		n.stop()
	case <-time.After(within):
		t.Fatal("the supervisor did not crash")
	}
}

// tenant reads a tenant from the registry (deleted ones included) by id.
func (st *stack) tenant(id string) *controlplane.Tenant {
	st.t.Helper()
	tn, err := st.store.Tenant(context.Background(), id)
	if err != nil {
		st.t.Fatal(err)
	}
	return tn
}

// waitFor polls the tenant with id until it is in state want.
func (st *stack) waitFor(t *testing.T, id string, want controlplane.State, within time.Duration) *controlplane.Tenant {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		tn, err := st.store.Tenant(context.Background(), id)
		if err == nil && tn.State == want {
			return tn
		}
		if time.Now().After(deadline) {
			t.Fatalf("tenant %s: %+v (%v), want %s", id, tn, err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// seed writes what a working cell would: a document in the tenant's database and an object
// under its prefix.
func (st *stack) seed(t *testing.T, id string) {
	t.Helper()
	ctx := context.Background()
	if _, err := st.store.Client().Database(controlplane.DatabaseName(id)).Collection("chats").InsertOne(ctx, bson.D{{Key: "tenantId", Value: id}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(controlplane.S3Prefix(id) + "c/1/file"),
		Body: strings.NewReader("attachment")}); err != nil {
		t.Fatal(err)
	}
}

// holdings reports which of its resources the tenant with id still has, by kind.
func (st *stack) holdings(t *testing.T, id string) map[string]bool {
	t.Helper()
	ctx := context.Background()
	out := map[string]bool{}
	names, err := st.store.Client().ListDatabaseNames(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if n == controlplane.DatabaseName(id) {
			out[controlplane.ResourceDatabase] = true
		}
	}
	objs, err := st.s3c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(controlplane.S3Prefix(id))})
	if err != nil {
		t.Fatal(err)
	}
	out[controlplane.ResourceObjectPrefix] = len(objs.Contents) > 0
	creds, err := st.access.TenantResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range creds {
		if c.TenantID == id {
			out[controlplane.ResourceCredentials] = true
		}
	}
	if _, err := os.Stat(filepath.Join(st.cellsDir, id)); err == nil {
		out[controlplane.ResourceProcessCell] = true
	}
	return out
}

// teardownReason matches the reason of a teardown event: "teardown <i>/<n>: ...".
var teardownReason = regexp.MustCompile(`^teardown (\d+)/(\d+): `)

// checkEvents verifies a tenant's history: sequence numbers increase, each event starts where the
// previous one ended, every change of state is legal, and the teardown events, if any, are each
// recorded once and in order.
func checkEvents(t *testing.T, evs []controlplane.Event) {
	t.Helper()
	var teardown []string
	for i, e := range evs {
		switch {
		case i == 0 && (e.From != "" || e.To != controlplane.StateCreationRequested):
			t.Fatalf("first event %+v", e)
		case i > 0 && e.Seq <= evs[i-1].Seq:
			t.Fatalf("event %d out of order: %+v", i, evs)
		case i > 0 && e.From != evs[i-1].To:
			t.Fatalf("event %d starts at %s, the previous ended at %s: %+v", i, e.From, evs[i-1].To, evs)
		case i > 0 && e.From != e.To && !controlplane.CanTransition(e.From, e.To):
			t.Fatalf("illegal event %+v", e)
		}
		if m := teardownReason.FindStringSubmatch(e.Reason); m != nil {
			if want := fmt.Sprint(len(teardown) + 1); m[1] != want {
				t.Fatalf("teardown event %q, want number %s: %+v", e.Reason, want, evs)
			}
			teardown = append(teardown, e.Reason)
		}
	}
	if len(teardown) > 0 {
		if m := teardownReason.FindStringSubmatch(teardown[0]); m[2] != fmt.Sprint(len(teardown)) {
			t.Fatalf("%d teardown events of %s: %v", len(teardown), m[2], teardown)
		}
	}
}

// noOrphans fails the test if a sweep finds anything left behind.
func noOrphans(t *testing.T, sup *supervisor.Supervisor) {
	t.Helper()
	r, err := sup.Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Orphans) > 0 {
		t.Fatalf("left behind: %+v", r.Orphans)
	}
	if len(r.Kinds) != 4 {
		t.Fatalf("sweep looked at %v", r.Kinds)
	}
}
