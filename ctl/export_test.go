package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"golang.org/x/crypto/bcrypt"

	"atende/cell"
	"atende/cell/auth"
	cellmongo "atende/cell/mongodb"
	"atende/controlplane"
	"atende/controlplane/api"
	"atende/controlplane/ferret"
	"atende/controlplane/s3bucket"
	"atende/controlplane/transfer"
	"atende/controlplane/versity"
)

// One embedded versitygw for the package (one per process).
var (
	ctlS3Once sync.Once
	ctlS3     *s3.Client
	ctlS3Err  error
)

const ctlBucket = "atende-ctl-test"

// recorder keeps the events the transfer service records (the tenant service here is the
// in-memory one of ctl_test.go, without a registry).
type recorder struct {
	mu      sync.Mutex
	reasons map[string][]string
}

func (r *recorder) RecordEvent(ctx context.Context, tenantID, reason string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reasons[tenantID] = append(r.reasons[tenantID], reason)
	return nil
}

// transferServer runs the real API with the in-memory tenant service and a real transfer service
// over an embedded FerretDB and versitygw. It returns the API URL, a token, the MongoDB URI and
// the event recorder.
func transferServer(t *testing.T) (string, string, string, *recorder) {
	t.Helper()
	ctlS3Once.Do(func() {
		dir, err := os.MkdirTemp("", "atende-ctl-s3-")
		if err != nil {
			ctlS3Err = err
			return
		}
		srv, err := versity.Start(dir, "127.0.0.1:0", "ctlroot", "ctlroot-secret-123")
		if err != nil {
			ctlS3Err = err
			return
		}
		ctlS3 = s3bucket.NewClient(srv.Endpoint(), versity.Region, "ctlroot", "ctlroot-secret-123")
		ctlS3Err = s3bucket.EnsureBucket(context.Background(), ctlS3, ctlBucket)
	})
	if ctlS3Err != nil {
		t.Fatal(ctlS3Err)
	}
	fdb, err := ferret.Start(t.TempDir(), "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fdb.Close)
	rec := &recorder{reasons: map[string][]string{}}
	store := &tenants{byKey: map[string]*controlplane.Tenant{}, reads: map[string]int{}}
	svc, err := transfer.New(transfer.Options{Tenants: store, MongoURI: fdb.URI(), S3: ctlS3, Bucket: ctlBucket, Events: rec, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close(context.Background()) })
	pub, priv, _ := ed25519.GenerateKey(nil)
	app := api.New(api.Options{Service: store, TokenKey: pub, Transfer: svc})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = app.Listener(ln) }()
	t.Cleanup(func() { _ = app.Shutdown() })
	token, err := api.IssueSuperAdminToken(priv, "ops@example.com", cell.ControlPlaneAudience, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return "http://" + ln.Addr().String(), token, fdb.URI(), rec
}

// TestExportAndImportCommands runs `ctl tenant export` and `ctl tenant import` (file, stdin and
// --from-mongo) against the real API and transfer service, with their errors and exit codes.
func TestExportAndImportCommands(t *testing.T) {
	url, token, mongoURI, rec := transferServer(t)
	env := map[string]string{envAPI: url, envToken: token}
	ctx := context.Background()
	for _, key := range []string{"acme", "globex", "initech", "legacy"} {
		if r := ctl(env, "", "tenant", "create", key, "--name", key, "--admin-email", "admin@"+key+".test"); r.code != 0 {
			t.Fatalf("create %s: %d %s", key, r.code, r.errOut)
		}
	}
	// acme's data, written as its cell would.
	store, err := cellmongo.Open(ctx, mongoURI, controlplane.DatabaseName("id-acme"), "id-acme")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(ctx)
	hash, _ := bcrypt.GenerateFromPassword([]byte("agent-password"), bcrypt.MinCost)
	now := time.Now().UTC()
	v := cell.Visitor{ID: auth.RandomID(), Name: "V", CreatedAt: now}
	v.TenantID = "id-acme"
	chat := cell.Chat{ID: auth.RandomID(), Status: cell.ChatQueued, VisitorID: v.ID, Visitor: v, CreatedAt: now, LastActivityAt: now, OpenKey: v.ID, LastSeq: 1, Labels: []string{}}
	for _, err := range []error{
		store.CreateUser(ctx, &cell.User{ID: auth.RandomID(), Email: "agent@acme.test", Name: "A", Roles: []string{cell.RoleAgent}, PasswordHash: string(hash), CreatedAt: now}),
		store.CreateVisitor(ctx, &v), store.InsertChat(ctx, &chat),
		store.InsertMessage(ctx, &cell.Message{ChatID: chat.ID, Seq: 1, ClientMsgID: "c1", From: cell.Author{Role: cell.RoleVisitor, ID: v.ID}, Body: "hi", CreatedAt: now}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ctlS3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(ctlBucket), Key: aws.String("t/id-acme/c/" + chat.ID + "/x"),
		Body: strings.NewReader("%PDF-1.4 a file"), ContentType: aws.String("application/pdf")}); err != nil {
		t.Fatal(err)
	}

	// Export to stdout, import from stdin.
	r := ctl(env, "", "tenant", "export", "acme")
	if r.code != 0 || !strings.Contains(r.errOut, "Exported acme (id-acme): 1 chats, 1 visitors, 1 messages, 1 users") {
		t.Fatalf("export: %d %s", r.code, r.errOut)
	}
	h, err := transfer.Verify(strings.NewReader(r.out))
	if err != nil || h.Objects.Count != 1 {
		t.Fatalf("the exported stdout: %+v %v", h, err)
	}
	file := r.out
	r = ctl(env, file, "tenant", "import", "globex")
	if r.code != 0 || !strings.Contains(r.errOut, "importing into globex… done") ||
		!strings.Contains(r.out, "Imported into globex (id-globex) from the export of acme (id-acme).") || !strings.Contains(r.out, "1 chats") {
		t.Fatalf("import: %d\n%s\n%s", r.code, r.out, r.errOut)
	}

	// Export to a file, import from it, with --json.
	path := filepath.Join(t.TempDir(), "acme.atende.jsonl.gz")
	if r = ctl(env, "", "--json", "tenant", "export", "acme", "-o", path); r.code != 0 || !strings.Contains(r.out, `"file": "`+path) {
		t.Fatalf("export -o: %d %s %s", r.code, r.out, r.errOut)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("export file: %v %v", fi, err)
	}
	r = ctl(env, "", "--json", "tenant", "import", "initech", "-f", path)
	var rep transfer.Report
	if r.code != 0 || json.Unmarshal([]byte(r.out), &rep) != nil || rep.Tenant.ID != "id-initech" || rep.Documents["messages"] != 1 || rep.Objects.Count != 1 {
		t.Fatalf("import -f --json: %d %s %s", r.code, r.out, r.errOut)
	}
	if got := rec.reasons["id-acme"]; len(got) != 2 || !strings.HasPrefix(got[0], "exported by super-admin ops@example.com") {
		t.Fatalf("acme events %q", got)
	}

	// A migration from the single-tenant app.
	client, err := mongo.Connect(options.Client().ApplyURI(mongoURI))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(ctx)
	userID := bson.NewObjectID()
	if _, err := client.Database("livechat").Collection("users").InsertOne(ctx, bson.D{{Key: "_id", Value: userID}, {Key: "name", Value: "Old Admin"},
		{Key: "email", Value: "old@legacy.test"}, {Key: "password", Value: string(hash)}, {Key: "role", Value: "admin"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Database("livechat").Collection("users").InsertOne(ctx, bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "email", Value: "x@legacy.test"}, {Key: "role", Value: "robot"}}); err != nil {
		t.Fatal(err)
	}
	r = ctl(env, "", "tenant", "import", "legacy", "--from-mongo", strings.TrimSuffix(mongoURI, "/")+"/livechat")
	if r.code != 0 || !strings.Contains(r.out, "read 2, imported 1\n") ||
		!strings.Contains(r.out, "password is not a bcrypt hash") || !strings.Contains(r.errOut, "migrating into legacy… done") {
		t.Fatalf("--from-mongo: %d\n%s\n%s", r.code, r.out, r.errOut)
	}

	garbage := filepath.Join(t.TempDir(), "garbage")
	os.WriteFile(garbage, []byte("not an export"), 0o600)
	for _, tc := range []struct {
		name   string
		stdin  string
		args   []string
		code   int
		stderr string
	}{
		{"unknown tenant", file, []string{"tenant", "import", "nobody"}, 1, "(not_found)"},
		{"not an export", "", []string{"tenant", "import", "globex", "-f", garbage}, 1, "not a gzip stream"},
		{"into a tenant with users but no chats", file, []string{"tenant", "import", "legacy"}, 0, ""},
		{"no such file", "", []string{"tenant", "import", "globex", "-f", filepath.Join(t.TempDir(), "none")}, 1, "no such file"},
		{"file and mongo", "", []string{"tenant", "import", "globex", "-f", path, "--from-mongo", "mongodb://x/y"}, 2, "not both"},
		{"database alone", "", []string{"tenant", "import", "globex", "--database", "x"}, 2, "--database goes with --from-mongo"},
		{"unreachable legacy", "", []string{"tenant", "import", "globex", "--from-mongo", "mongodb://127.0.0.1:1/x?serverSelectionTimeoutMS=200"}, 1, "cannot read the legacy database x on 127.0.0.1:1"},
		{"export of nobody", "", []string{"tenant", "export", "nobody"}, 1, "(not_found)"},
		{"export into a missing directory", "", []string{"tenant", "export", "acme", "-o", filepath.Join(t.TempDir(), "no", "dir")}, 1, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ctl(env, tc.stdin, tc.args...)
			if r.code != tc.code || !strings.Contains(r.errOut, tc.stderr) {
				t.Fatalf("exit %d (want %d)\nstderr: %s\nstdout: %.300s", r.code, tc.code, r.errOut, r.out)
			}
		})
	}
	// Importing acme again into globex is a no-op; acme's data into legacy (which has other data
	// now: a user, no chats) is allowed too; but globex with a new chat refuses.
	extra, err := cellmongo.Open(ctx, mongoURI, controlplane.DatabaseName("id-globex"), "id-globex")
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close(ctx)
	v2 := cell.Visitor{ID: auth.RandomID(), Name: "W", CreatedAt: now}
	if err := extra.InsertChat(ctx, &cell.Chat{ID: auth.RandomID(), Status: cell.ChatResolved, VisitorID: v2.ID, Visitor: v2, CreatedAt: now, Labels: []string{}}); err != nil {
		t.Fatal(err)
	}
	if r := ctl(env, file, "tenant", "import", "globex"); r.code != 1 || !strings.Contains(r.errOut, "already has data that is not from this file (1 chats)") || !strings.HasSuffix(r.errOut, "(conflict)\n") {
		t.Fatalf("import into a tenant with another chat: %d %s", r.code, r.errOut)
	}
}
