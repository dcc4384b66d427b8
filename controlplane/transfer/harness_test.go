package transfer_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"atende/cell"
	"atende/cell/auth"
	"atende/cell/celltest"
	"atende/cell/service"
	"atende/controlplane"
	cpmongo "atende/controlplane/mongodb"
	"atende/controlplane/transfer"
)

// The real embedded dependencies, started once for the package (versitygw allows one per
// process); every test has its own registry database and its own tenants.
var (
	mongoURI   string
	s3Endpoint string
	s3c        *s3.Client
	mongoc     *mongo.Client
)

const (
	s3Access = "transferroot"
	s3Secret = "transferroot-secret-1"
	s3Bucket = "atende-transfer"
)

func TestMain(m *testing.M) {
	deps, err := celltest.StartDeps("transfer", s3Access, s3Secret, s3Bucket)
	if err != nil {
		panic(err)
	}
	mongoURI, s3Endpoint, s3c = deps.MongoURI, deps.S3Endpoint, deps.S3
	if mongoc, err = mongo.Connect(options.Client().ApplyURI(mongoURI)); err != nil {
		panic(err)
	}
	code := m.Run()
	_ = mongoc.Disconnect(context.Background())
	deps.Close()
	os.Exit(code)
}

// finder resolves tenants in the registry by id, then by key.
type finder struct{ s *cpmongo.Store }

func (f finder) Tenant(ctx context.Context, idOrKey string) (*controlplane.Tenant, error) {
	t, err := f.s.Tenant(ctx, idOrKey)
	if controlplane.ErrorCode(err) != controlplane.ENotFound {
		return t, err
	}
	return f.s.TenantByKey(ctx, idOrKey)
}

// env is one test's registry and transfer service.
type env struct {
	t   *testing.T
	reg *cpmongo.Store
	svc *transfer.Service
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	reg, err := cpmongo.Open(ctx, mongoURI, "reg_"+auth.RandomID()[:12])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close(context.Background()) })
	svc, err := transfer.New(transfer.Options{Tenants: finder{reg}, MongoURI: mongoURI, S3: s3c, Bucket: s3Bucket,
		Events: transfer.StoreEvents{Store: reg}, TempDir: t.TempDir(), Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close(context.Background()) })
	return &env{t: t, reg: reg, svc: svc}
}

// tenant registers a tenant in state (its database does not exist until a cell or an import
// writes it).
func (e *env) tenant(key string, state controlplane.State) *controlplane.Tenant {
	e.t.Helper()
	now := time.Now().UTC()
	id := controlplane.NewTenantID()
	tn := &controlplane.Tenant{ID: id, Key: key, Name: strings.ToUpper(key[:1]) + key[1:], State: state, Plan: controlplane.PlanPro,
		AllowedOrigins: []string{}, Webhooks: []controlplane.Webhook{}, CreatedAt: now, UpdatedAt: now,
		Cell: controlplane.Cell{Database: controlplane.DatabaseName(id), S3Prefix: controlplane.S3Prefix(id)}}
	if err := e.reg.CreateTenant(context.Background(), tn, controlplane.Event{TenantID: id, To: state, At: now, Reason: "test"}); err != nil {
		e.t.Fatal(err)
	}
	return tn
}

// events returns the reasons of a tenant's registry events.
func (e *env) events(id string) []string {
	e.t.Helper()
	evs, err := e.reg.Events(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Reason)
	}
	return out
}

// testCell is an in-process cell serving one tenant (celltest), with helpers for its API.
type testCell struct {
	*celltest.Cell
	t    *testing.T
	cfg  cell.Config
	base string
	host string
	svc  *service.Service
	stop func()
}

const adminPassword = "admin-password-1"

// startCell runs a cell for tn whose bootstrap tenant-admin is adminEmail (password
// adminPassword).
func startCell(t *testing.T, tn *controlplane.Tenant, adminEmail string) *testCell {
	t.Helper()
	deps := &celltest.Deps{MongoURI: mongoURI, S3Endpoint: s3Endpoint, S3Access: s3Access, S3Secret: s3Secret, Bucket: s3Bucket}
	cfg, _, err := deps.Config(tn.ID, tn.Key)
	if err != nil {
		t.Fatal(err)
	}
	cfg.TenantName, cfg.Database, cfg.S3Prefix = tn.Name, controlplane.DatabaseName(tn.ID), controlplane.S3Prefix(tn.ID)
	cfg.MaxUploadBytes = 8 << 20
	hash, _ := auth.HashPassword(adminPassword)
	c := celltest.Start(t, cfg, celltest.Options{
		Bootstrap: []cell.BootstrapUser{{Email: adminEmail, Name: "Admin", Roles: []string{cell.RoleTenantAdmin, cell.RoleAgent}, PasswordHash: hash}}})
	return &testCell{Cell: c, t: t, cfg: c.Cfg, base: c.Base, host: tn.Key + ".localhost:8080", svc: c.Service, stop: c.Stop}
}

// do sends a JSON request to the cell with its tenant's Host and decodes the answer into out.
func (tc *testCell) do(method, path, token string, body, out any) int {
	tc.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, tc.base+path, rd)
	if err != nil {
		tc.t.Fatal(err)
	}
	req.Host = tc.host
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tc.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			tc.t.Fatalf("%s %s: decoding %q: %v", method, path, data, err)
		}
	}
	return resp.StatusCode
}

// must is do that fails the test unless the answer has status want.
func (tc *testCell) must(want int, method, path, token string, body, out any) {
	tc.t.Helper()
	var raw json.RawMessage
	if got := tc.do(method, path, token, body, &raw); got != want {
		tc.t.Fatalf("%s %s: %d %s, want %d", method, path, got, raw, want)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			tc.t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

// login returns an access token for email.
func (tc *testCell) login(email, password string) string {
	tc.t.Helper()
	var out struct {
		AccessToken string `json:"accessToken"`
	}
	tc.must(200, "POST", "/api/auth/login", "", map[string]string{"email": email, "password": password}, &out)
	return out.AccessToken
}

// dbDocs returns every document of collection c in database db, as canonical Extended JSON by
// _id, with the tenant id from replaced by "TENANT" (tenantId fields and the prefix in keys).
func dbDocs(t *testing.T, db, c, tenantID string) map[string]string {
	t.Helper()
	cur, err := mongoc.Database(db).Collection(c).Find(context.Background(), bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for cur.Next(context.Background()) {
		j, err := bson.MarshalExtJSON(cur.Current, true, false)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(j), `"tenantId":"`+tenantID+`"`, `"tenantId":"TENANT"`)
		s = strings.ReplaceAll(s, controlplane.S3Prefix(tenantID), "t/TENANT/")
		id, _ := cur.Current.Lookup("_id").StringValueOK()
		out[id] = s
	}
	if err := cur.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// objects returns the objects under the tenant's prefix: relative key → bytes, content type and
// metadata.
type object struct {
	data        []byte
	contentType string
	metadata    map[string]string
}

func objects(t *testing.T, tenantID string) map[string]object {
	t.Helper()
	ctx := context.Background()
	prefix := controlplane.S3Prefix(tenantID)
	list, err := s3c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(s3Bucket), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]object{}
	for _, o := range list.Contents {
		got, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s3Bucket), Key: o.Key})
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(got.Body)
		got.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimPrefix(aws.ToString(o.Key), prefix)] = object{data: data, contentType: aws.ToString(got.ContentType), metadata: got.Metadata}
	}
	return out
}

// lines decompresses an export into its lines.
func lines(t *testing.T, file []byte) []string {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(gz)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

// pack compresses lines back into an export.
func pack(ls []string) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	gz.Write([]byte(strings.Join(ls, "\n") + "\n"))
	gz.Close()
	return buf.Bytes()
}

// collections returns the names of the collections of database db that hold documents.
func collections(t *testing.T, db string) []string {
	t.Helper()
	names, err := mongoc.Database(db).ListCollectionNames(context.Background(), bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range names {
		if c, _ := mongoc.Database(db).Collection(n).CountDocuments(context.Background(), bson.D{}); c > 0 {
			out = append(out, fmt.Sprintf("%s:%d", n, c))
		}
	}
	sort.Strings(out)
	return out
}
