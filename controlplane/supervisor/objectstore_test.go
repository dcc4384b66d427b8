package supervisor_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"atende/cell"
	"atende/controlplane"
	"atende/controlplane/s3bucket"
	"atende/controlplane/supervisor"
	"atende/controlplane/versity"
)

var _ supervisor.ObjectStoreIAM = (*versity.TenantAccess)(nil)

// cellEnv returns the environment the tenant's cell process was started with, read from
// /proc/<pid>/environ.
func cellEnv(t *testing.T, tn *controlplane.Tenant) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", tn.Cell.PID))
	if err != nil {
		t.Fatalf("environment of the cell of %s: %v", tn.Key, err)
	}
	env := map[string]string{}
	for _, kv := range strings.Split(string(b), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return env
}

// objectStatus presigns with accessKey/secretKey, as a cell does, a PUT (when put) or a GET of
// key and returns the status the gateway answers.
func objectStatus(t *testing.T, endpoint, accessKey, secretKey, key string, put bool) int {
	t.Helper()
	pre := s3.NewPresignClient(s3bucket.NewClient(endpoint, versity.Region, accessKey, secretKey))
	ctx := context.Background()
	body := []byte("\x89PNG\r\n\x1a\n")
	var req *http.Request
	if put {
		p, err := pre.PresignPutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("atende"), Key: aws.String(key),
			ContentType: aws.String("image/png"), ContentLength: aws.Int64(int64(len(body)))}, s3.WithPresignExpires(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		req, _ = http.NewRequest(http.MethodPut, p.URL, bytes.NewReader(body))
		req.Header.Set("Content-Type", "image/png")
	} else {
		p, err := pre.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("atende"), Key: aws.String(key)}, s3.WithPresignExpires(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		req, _ = http.NewRequest(http.MethodGet, p.URL, nil)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestCellsGetTheirTenantsObjectStoreCredentials runs the supervisor with the embedded gateway's
// TenantAccess: each cell is started with credentials of its own tenant (never the root's) that
// reach only its prefix; suspension and deletion revoke them; a restarted supervisor repairs
// grants lost or left behind by a crash.
func TestCellsGetTheirTenantsObjectStoreCredentials(t *testing.T) {
	srv, err := versity.Start(t.TempDir(), "127.0.0.1:0", "rootkey", "rootsecret12345")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	if err := s3bucket.EnsureBucket(ctx, s3bucket.NewClient(srv.Endpoint(), versity.Region, "rootkey", "rootsecret12345"), "atende"); err != nil {
		t.Fatal(err)
	}
	access := srv.TenantAccess("atende")
	withIAM := func(o *supervisor.Options) {
		o.ObjectStoreIAM = access
		o.Platform.S3Endpoint, o.Platform.S3Region, o.Platform.S3Bucket = srv.Endpoint(), versity.Region, "atende"
		o.Platform.S3AccessKey, o.Platform.S3SecretKey = "rootkey", "rootsecret12345"
	}
	store := openStore(t)
	f := start(t, store, nil, 0, withIAM)
	for _, key := range []string{"acme", "globex"} {
		if _, err := f.sup.CreateTenant(ctx, controlplane.NewTenant{Key: key, Name: key, Admin: controlplane.NewUser{Email: "admin@" + key + ".test"}}); err != nil {
			t.Fatal(err)
		}
	}
	acme := waitState(t, f.sup, "acme", controlplane.StateLive, 10*time.Second)
	globex := waitState(t, f.sup, "globex", controlplane.StateLive, 10*time.Second)
	creds := func(tn *controlplane.Tenant) (string, string) {
		t.Helper()
		env := cellEnv(t, tn)
		a, s := env[cell.EnvS3AccessKey], env[cell.EnvS3SecretKey]
		if a != "tenant-"+tn.ID || a == "rootkey" || s == "rootsecret12345" || len(s) != 64 {
			t.Fatalf("cell of %s started with S3 credentials %q/%q, want its own", tn.Key, a, s)
		}
		return a, s
	}
	acmeKey, acmeSecret := creds(acme)
	globexKey, globexSecret := creds(globex)
	own := controlplane.S3Prefix(acme.ID) + "c/1/a"
	status := func(accessKey, secretKey, key string, put bool) int {
		return objectStatus(t, srv.Endpoint(), accessKey, secretKey, key, put)
	}
	if st := status(acmeKey, acmeSecret, own, true); st != 200 {
		t.Fatalf("acme PUT under its prefix: %d", st)
	}
	if st := status(acmeKey, acmeSecret, own, false); st != 200 {
		t.Fatalf("acme GET under its prefix: %d", st)
	}
	if st := status(acmeKey, acmeSecret, controlplane.S3Prefix(globex.ID)+"c/1/a", true); st != 403 {
		t.Fatalf("acme PUT under globex's prefix: %d, want 403", st)
	}
	if st := status(globexKey, globexSecret, own, false); st != 403 {
		t.Fatalf("globex GET of acme's object: %d, want 403", st)
	}

	t.Run("suspension revokes, resumption grants again", func(t *testing.T) {
		if _, err := f.sup.SuspendTenant(ctx, "acme"); err != nil {
			t.Fatal(err)
		}
		waitState(t, f.sup, "acme", controlplane.StateSuspended, 10*time.Second)
		if st := status(acmeKey, acmeSecret, own, false); st != 403 {
			t.Fatalf("suspended acme GET: %d, want 403", st)
		}
		if _, err := f.sup.ResumeTenant(ctx, "acme"); err != nil {
			t.Fatal(err)
		}
		resumed := waitState(t, f.sup, "acme", controlplane.StateLive, 10*time.Second)
		if a, s := creds(resumed); a != acmeKey || s != acmeSecret {
			t.Fatal("resumed cell got other credentials")
		}
		if st := status(acmeKey, acmeSecret, own, false); st != 200 {
			t.Fatalf("resumed acme GET: %d, want 200", st)
		}
	})

	t.Run("deletion revokes", func(t *testing.T) {
		if _, err := f.sup.DeleteTenant(ctx, acme.ID, true); err != nil {
			t.Fatal(err)
		}
		waitState(t, f.sup, acme.ID, controlplane.StateDeleted, 10*time.Second)
		if st := status(acmeKey, acmeSecret, own, false); st != 403 {
			t.Fatalf("deleted acme GET: %d, want 403", st)
		}
		if st := status(acmeKey, acmeSecret, controlplane.S3Prefix(acme.ID)+"c/1/b", true); st != 403 {
			t.Fatalf("deleted acme PUT: %d, want 403", st)
		}
		if st := status(globexKey, globexSecret, controlplane.S3Prefix(globex.ID)+"c/1/a", true); st != 200 {
			t.Fatalf("globex PUT after acme's deletion: %d, want 200", st)
		}
	})

	t.Run("a restarted supervisor repairs the grants", func(t *testing.T) {
		f.stop()
		// What a crash can leave: the grant of a tenant the registry no longer holds (between
		// its revocation steps) and a live tenant without its grant (between its grant steps).
		ghost := controlplane.NewTenantID()
		ghostKey, ghostSecret, err := access.GrantTenant(ctx, ghost)
		if err != nil {
			t.Fatal(err)
		}
		if err := access.RevokeTenant(ctx, globex.ID); err != nil {
			t.Fatal(err)
		}
		if st := status(ghostKey, ghostSecret, controlplane.S3Prefix(ghost)+"x", true); st != 200 {
			t.Fatalf("ghost PUT before the restart: %d", st)
		}
		f2 := start(t, store, nil, 0, withIAM)
		eventually(t, "globex's cell restarted with working credentials", func() bool {
			tn, err := f2.sup.Tenant(ctx, "globex")
			if err != nil || tn.State != controlplane.StateLive {
				return false
			}
			st, err := f2.sup.CellStatus(ctx, "globex")
			return err == nil && st.Healthy && status(globexKey, globexSecret, controlplane.S3Prefix(globex.ID)+"c/1/a", false) == 200
		})
		if st := status(ghostKey, ghostSecret, controlplane.S3Prefix(ghost)+"x", false); st != 403 {
			t.Fatalf("ghost GET after the restart: %d, want 403", st)
		}
	})
}
