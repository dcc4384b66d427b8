package webhook

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"atende/controlplane/ferret"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// mongoClient talks to the embedded FerretDB started once for the package (TestMain); each test
// uses its own database.
var mongoClient *mongo.Client

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "atende-webhook-test-")
	if err != nil {
		panic(err)
	}
	fdb, err := ferret.Start(dir+"/mongo", "127.0.0.1:0", nil)
	if err != nil {
		panic(err)
	}
	mongoClient, err = mongo.Connect(options.Client().ApplyURI(fdb.URI()).SetTimeout(10 * time.Second))
	if err != nil {
		panic(err)
	}
	code := m.Run()
	_ = mongoClient.Disconnect(context.Background())
	fdb.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

func randomID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newDB returns a fresh database, named like a cell's ("t_<tenantId>"), and the tenant id.
func newDB(t *testing.T) (*mongo.Database, string) {
	t.Helper()
	tenant := randomID()
	db := mongoClient.Database("t_" + tenant)
	t.Cleanup(func() { _ = db.Drop(context.Background()) })
	return db, tenant
}

// fastOptions are test timings: quick retries, a short lease, loopback receivers allowed.
func fastOptions() Options {
	return Options{Timeout: 300 * time.Millisecond, BackoffBase: 30 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		LeaseTTL: time.Second, Rescan: 100 * time.Millisecond, AllowPrivateNetworks: true}
}

// hit is one request a receiver got.
type hit struct {
	header http.Header
	body   []byte
	at     time.Time
}

// receiver is a real HTTP server on loopback that records every request and answers
// status(n) to the n-th (1-based).
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	hits   []hit
	status func(n int) int
}

func newReceiver(t *testing.T, status func(n int) int) *receiver {
	t.Helper()
	r := &receiver{status: status}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.hits = append(r.hits, hit{header: req.Header.Clone(), body: body, at: time.Now()})
		n := len(r.hits)
		r.mu.Unlock()
		w.WriteHeader(r.status(n))
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func always(code int) func(int) int { return func(int) int { return code } }

func (r *receiver) all() []hit {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hit(nil), r.hits...)
}

func (r *receiver) count() int { return len(r.all()) }

// staticEndpoints returns an EndpointsFunc with one endpoint receiving every event type.
func staticEndpoints(url, secret string) EndpointsFunc {
	return func(context.Context) ([]Endpoint, error) {
		return []Endpoint{{URL: url, Secret: secret, Events: EventTypes()}}, nil
	}
}

func newDispatcher(t *testing.T, db *mongo.Database, tenant string, eps EndpointsFunc, opts Options) *Dispatcher {
	t.Helper()
	d, err := New(db, tenant, eps, opts)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// run starts d.Run and returns a stop func that cancels it and waits for it to return (also
// called at cleanup).
func run(t *testing.T, d *Dispatcher) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// waitFor polls cond every 10 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func publish(t *testing.T, d *Dispatcher, id string, typ EventType, payload any) {
	t.Helper()
	b, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Publish(context.Background(), Event{ID: id, Type: typ, Payload: b}); err != nil {
		t.Fatalf("publish %s: %v", id, err)
	}
}

func pending(t *testing.T, d *Dispatcher) int64 {
	t.Helper()
	n, err := d.Pending(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}
