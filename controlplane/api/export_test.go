package api_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"atende/cell"
	"atende/cell/auth"
	cellmongo "atende/cell/mongodb"
	"atende/controlplane"
	"atende/controlplane/api"
	"atende/controlplane/ferret"
	"atende/controlplane/mongodb"
	"atende/controlplane/process"
	"atende/controlplane/s3bucket"
	"atende/controlplane/supervisor"
	"atende/controlplane/transfer"
	"atende/controlplane/versity"
)

// One embedded versitygw for the package (one per process).
var (
	s3Once   sync.Once
	s3Client *s3.Client
	s3Err    error
)

const apiBucket = "atende-api-test"

func objectStore(t *testing.T) *s3.Client {
	t.Helper()
	s3Once.Do(func() {
		dir, err := os.MkdirTemp("", "atende-api-s3-")
		if err != nil {
			s3Err = err
			return
		}
		srv, err := versity.Start(dir, "127.0.0.1:0", "apiroot", "apiroot-secret-12")
		if err != nil {
			s3Err = err
			return
		}
		s3Client = s3bucket.NewClient(srv.Endpoint(), versity.Region, "apiroot", "apiroot-secret-12")
		s3Err = s3bucket.EnsureBucket(context.Background(), s3Client, apiBucket)
	})
	if s3Err != nil {
		t.Fatal(s3Err)
	}
	return s3Client
}

// transferStack is the API with a real transfer service over the registry's FerretDB and the
// embedded S3 server, on top of the supervisor and process driver of startStack.
type transferStack struct {
	url      string
	good     *api.Client
	mongoURI string
	mongo    *mongo.Client
	s3       *s3.Client
	svc      *transfer.Service
}

// sabotage, when set, runs after an export was prepared and before it is sent.
type sabotaged struct {
	*transfer.Service
	after func(*transfer.Export)
}

func (s sabotaged) PrepareExport(ctx context.Context, idOrKey, actor string) (*transfer.Export, error) {
	ex, err := s.Service.PrepareExport(ctx, idOrKey, actor)
	if err == nil && s.after != nil {
		s.after(ex)
	}
	return ex, err
}

func startTransferStack(t *testing.T, after func(*transfer.Export)) *transferStack {
	t.Helper()
	srv, err := ferret.Start(t.TempDir(), "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	store, err := mongodb.Open(ctx, srv.URI(), "")
	if err != nil {
		t.Fatal(err)
	}
	drv, err := process.New(process.Options{Binary: fakeBin, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	sup, err := supervisor.New(supervisor.Options{Store: store, Driver: drv, Platform: supervisor.Platform{Domain: "localhost", PublicPort: 8080}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = sup.Run(ctx) }()
	s3c := objectStore(t)
	svc, err := transfer.New(transfer.Options{Tenants: sup, MongoURI: srv.URI(), S3: s3c, Bucket: apiBucket,
		Events: transfer.StoreEvents{Store: store}, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	pub, priv, _ := ed25519.GenerateKey(nil)
	app := api.New(api.Options{Service: sup, TokenKey: pub, BodyLimit: 4 << 10, Transfer: sabotaged{Service: svc, after: after}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = app.Listener(ln) }()
	mc, err := mongo.Connect(options.Client().ApplyURI(srv.URI()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = app.Shutdown()
		cancel()
		<-done
		drv.StopAll(context.Background())
		_ = svc.Close(context.Background())
		_ = mc.Disconnect(context.Background())
		_ = store.Close(context.Background())
	})
	token, err := api.IssueSuperAdminToken(priv, "root@test", cell.ControlPlaneAudience, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	return &transferStack{url: url, good: &api.Client{BaseURL: url, Token: token}, mongoURI: srv.URI(), mongo: mc, s3: s3c, svc: svc}
}

// liveTenant creates a tenant through the API and waits until it is live.
func (s *transferStack) liveTenant(t *testing.T, key string) *controlplane.Tenant {
	t.Helper()
	ctx := context.Background()
	if _, err := s.good.CreateTenant(ctx, api.CreateTenantRequest{Key: key, Name: key, AdminEmail: "admin@" + key + ".test"}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if tn, err := s.good.GetTenant(ctx, key); err == nil && tn.State == controlplane.StateLive {
			return tn
		}
	}
	t.Fatalf("%s is not live", key)
	return nil
}

// fill writes a chat with n messages and one object of size bytes into the tenant's database and
// prefix, through the cell's store (the fake cell does not write any).
func (s *transferStack) fill(t *testing.T, tn *controlplane.Tenant, n, size int) string {
	t.Helper()
	ctx := context.Background()
	store, err := cellmongo.Open(ctx, s.mongoURI, controlplane.DatabaseName(tn.ID), tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(ctx)
	now := time.Now().UTC()
	v := cell.Visitor{ID: auth.RandomID(), TenantID: tn.ID, Name: "V", CreatedAt: now}
	c := cell.Chat{ID: auth.RandomID(), Status: cell.ChatQueued, VisitorID: v.ID, Visitor: v, CreatedAt: now, LastActivityAt: now, OpenKey: v.ID, LastSeq: int64(n), Labels: []string{}}
	if err := store.CreateVisitor(ctx, &v); err != nil {
		t.Fatal(err)
	}
	if err := store.InsertChat(ctx, &c); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		if err := store.InsertMessage(ctx, &cell.Message{ChatID: c.ID, Seq: int64(i), ClientMsgID: fmt.Sprint("c", i),
			From: cell.Author{Role: cell.RoleVisitor, ID: v.ID, Name: "V"}, Body: fmt.Sprint("message ", i), CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	data := make([]byte, size)
	_, _ = rand.Read(data)
	if _, err := s.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(apiBucket), Key: aws.String(controlplane.S3Prefix(tn.ID) + "c/" + c.ID + "/f"),
		Body: bytes.NewReader(data), ContentType: aws.String("application/pdf")}); err != nil {
		t.Fatal(err)
	}
	return c.ID
}

// raw sends a request with a body (chunked when size < 0) and returns the status and body.
func (s *transferStack) raw(t *testing.T, method, path, contentType, token string, body io.Reader, size int64) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, s.url+path, body)
	req.ContentLength = size
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// TestExportAndImportThroughTheAPI streams an export out and back in through the API (far beyond
// the API's 4 KiB body limit, with and without Content-Length), checks the events, and checks
// that every failure answers the API's error shape without writing anything, while the other
// routes keep their body limit.
func TestExportAndImportThroughTheAPI(t *testing.T) {
	s := startTransferStack(t, nil)
	ctx := context.Background()
	alpha := s.liveTenant(t, "alpha")
	chat := s.fill(t, alpha, 50, 300<<10)

	var file bytes.Buffer
	h, n, err := s.good.ExportTenant(ctx, "alpha", &file)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(file.Len()) || n < 300<<10 || h.Tenant.ID != alpha.ID || h.Counts["messages"] != 50 || h.Objects.Count != 1 {
		t.Fatalf("export: %d bytes, header %+v", n, h)
	}
	req, _ := http.NewRequest("GET", s.url+"/api/tenants/alpha/export", nil)
	req.Header.Set("Authorization", "Bearer "+s.good.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/gzip" || resp.Header.Get("Cache-Control") != "no-store" ||
		!strings.HasPrefix(resp.Header.Get("Content-Disposition"), `attachment; filename="alpha-`) {
		t.Fatalf("export answer %d %v", resp.StatusCode, resp.Header)
	}

	for i, size := range []int64{int64(file.Len()), -1} { // with Content-Length, then chunked
		key := []string{"beta", "gamma"}[i]
		tn := s.liveTenant(t, key)
		rep, err := s.good.ImportTenant(ctx, key, bytes.NewReader(file.Bytes()), size)
		if err != nil {
			t.Fatalf("import into %s: %v", key, err)
		}
		if rep.Tenant.ID != tn.ID || rep.From.ID != alpha.ID || rep.Documents["messages"] != 50 || rep.Objects != h.Objects {
			t.Fatalf("report %+v", rep)
		}
		var got cell.Chat
		if err := s.mongo.Database(controlplane.DatabaseName(tn.ID)).Collection("chats").FindOne(ctx, bson.D{{Key: "_id", Value: chat}}).Decode(&got); err != nil || got.TenantID != tn.ID {
			t.Fatalf("imported chat %+v %v", got, err)
		}
		evs, _ := s.good.TenantEvents(ctx, key)
		if last := evs[len(evs)-1]; last.From != controlplane.StateLive || last.To != controlplane.StateLive ||
			!strings.HasPrefix(last.Reason, "imported by super-admin root@test from the export of tenant alpha") {
			t.Fatalf("events of %s: %+v", key, evs)
		}
	}
	evs, _ := s.good.TenantEvents(ctx, "alpha")
	if last := evs[len(evs)-1]; !strings.HasPrefix(last.Reason, "exported by super-admin root@test: 1 chats, 1 visitors, 50 messages") {
		t.Fatalf("events of alpha: %+v", evs)
	}

	// Failures: the error shape and status, nothing written.
	empty := s.liveTenant(t, "empty")
	busy := s.liveTenant(t, "busy")
	s.fill(t, busy, 1, 10)
	big := bytes.Repeat([]byte("x"), 1<<20)
	for _, tc := range []struct {
		name, method, path, contentType string
		token                           string
		body                            []byte
		chunked                         bool
		status                          int
		message                         string
	}{
		{"not gzip", "POST", "/api/tenants/empty/import", "application/gzip", s.good.Token, []byte("not an export"), false, 400, "not a gzip stream"},
		{"damaged", "POST", "/api/tenants/empty/import", "application/gzip", s.good.Token, file.Bytes()[:file.Len()-100], true, 400, "damaged"},
		{"other data", "POST", "/api/tenants/busy/import", "application/gzip", s.good.Token, file.Bytes(), false, 409, "already has data that is not from this file"},
		{"unknown tenant, large body", "POST", "/api/tenants/nobody/import", "application/gzip", s.good.Token, big, false, 404, "nobody"},
		{"no token, large body", "POST", "/api/tenants/empty/import", "application/gzip", "", big, true, 401, "bearer token"},
		{"wrong content type", "POST", "/api/tenants/empty/import", "text/plain", s.good.Token, []byte("x"), false, 400, "Content-Type must be application/gzip"},
		{"legacy without a URI", "POST", "/api/tenants/empty/import", "application/json", s.good.Token, []byte(`{"database":"x"}`), false, 400, "fromMongo is required"},
		{"legacy unknown field", "POST", "/api/tenants/empty/import", "application/json", s.good.Token, []byte(`{"fromMongo":"mongodb://x/y","colour":1}`), false, 400, "unknown field"},
		{"legacy unreachable", "POST", "/api/tenants/empty/import", "application/json", s.good.Token, []byte(`{"fromMongo":"mongodb://127.0.0.1:1/app?serverSelectionTimeoutMS=200"}`), false, 400, "cannot read the legacy database app"},
		{"legacy too large", "POST", "/api/tenants/empty/import", "application/json", s.good.Token, big, false, 413, "at most"},
		{"export of nobody", "GET", "/api/tenants/nobody/export", "", s.good.Token, nil, false, 404, "nobody"},
		{"other route, chunked, too large", "POST", "/api/tenants", "application/json", s.good.Token, big, true, 413, "larger than 4096 bytes"},
		{"other route, too large", "POST", "/api/tenants", "application/json", s.good.Token, big, false, 413, "larger than 4096 bytes"},
	} {
		var body io.Reader
		size := int64(len(tc.body))
		if tc.body != nil {
			body = bytes.NewReader(tc.body)
		}
		if tc.chunked {
			size = -1
		}
		status, text := s.raw(t, tc.method, tc.path, tc.contentType, tc.token, body, size)
		if status != tc.status || !strings.Contains(text, `{"error":{"code":`) || !strings.Contains(text, tc.message) {
			t.Errorf("%s: %d %.300s, want %d mentioning %q", tc.name, status, text, tc.status, tc.message)
		}
	}
	names, _ := s.mongo.Database(controlplane.DatabaseName(empty.ID)).ListCollectionNames(ctx, bson.D{})
	if len(names) != 0 {
		t.Errorf("refused imports created %v", names)
	}
	if n, _ := s.mongo.Database(controlplane.DatabaseName(busy.ID)).Collection("messages").CountDocuments(ctx, bson.D{}); n != 1 {
		t.Errorf("a refused import changed the busy tenant: %d messages", n)
	}
	if status, _ := s.raw(t, "HEAD", "/api/tenants/alpha/export", "", s.good.Token, nil, 0); status != 400 {
		t.Errorf("HEAD export: %d, want 400 (no export prepared for nobody)", status)
	}
	// Small bodies of other routes still work (read from the stream into memory), chunked too.
	status, text := s.raw(t, "POST", "/api/tenants", "application/json", s.good.Token,
		strings.NewReader(`{"key":"zeta","name":"Zeta","adminEmail":"a@zeta.test"}`), -1)
	if status != 202 || !strings.Contains(text, `"key":"zeta"`) {
		t.Fatalf("chunked create: %d %s", status, text)
	}
}

// TestAnExportCutShortIsAnError: when an export fails while it is being sent (here an object
// vanishes after the export was prepared), the connection breaks without the final chunk, the
// client reports an error, and the failure is recorded.
func TestAnExportCutShortIsAnError(t *testing.T) {
	var s *transferStack
	s = startTransferStack(t, func(ex *transfer.Export) {
		prefix := controlplane.S3Prefix(ex.Header().Tenant.ID)
		list, err := s.s3.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(apiBucket), Prefix: aws.String(prefix)})
		if err != nil || len(list.Contents) == 0 {
			t.Errorf("no object to remove: %v", err)
			return
		}
		_, _ = s.s3.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String(apiBucket), Key: list.Contents[0].Key})
	})
	ctx := context.Background()
	tn := s.liveTenant(t, "flaky")
	s.fill(t, tn, 3, 2<<20)
	var out bytes.Buffer
	_, _, err := s.good.ExportTenant(ctx, "flaky", &out)
	if err == nil {
		t.Fatalf("an export that failed midway reported success (%d bytes)", out.Len())
	}
	if _, verr := transfer.Verify(bytes.NewReader(out.Bytes())); verr == nil {
		t.Fatal("the partial file verifies as complete")
	}
	evs, _ := s.good.TenantEvents(ctx, "flaky")
	var reason string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		evs, _ = s.good.TenantEvents(ctx, "flaky")
		if reason = evs[len(evs)-1].Reason; strings.Contains(reason, "failed") {
			break
		}
	}
	if !strings.HasPrefix(reason, "export by super-admin root@test failed") {
		t.Fatalf("events %+v (client error %v)", evs, err)
	}
}
