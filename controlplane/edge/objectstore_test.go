package edge

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"atende/controlplane"
	"atende/controlplane/s3bucket"
	"atende/controlplane/versity"
)

// do sends one request and returns the status, headers and body of the answer.
func do(t *testing.T, method, url string, header http.Header, body []byte) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == nil {
		req.Body = nil
	}
	for k, vs := range header {
		if !strings.EqualFold(k, "host") && !strings.EqualFold(k, "content-length") {
			req.Header[k] = vs
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, got
}

// TestObjectStoreThroughTheEdge serves the embedded gateway through the edge on the bare domain,
// under the bucket's path, as local mode does: presigned URLs made for the edge's address (with a
// tenant's own credentials, as a cell makes them) work through it, every answer carries nosniff,
// downloads keep the signed attachment disposition, CORS preflights pass, and nothing but
// browser methods and clean paths reach the store.
func TestObjectStoreThroughTheEdge(t *testing.T) {
	srv, err := versity.Start(t.TempDir(), "127.0.0.1:0", "rootkey", "rootsecret12345")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	router := New(Options{
		Domain: "localhost", Landing: page(http.StatusOK, "landing"), NotFound: page(http.StatusNotFound, "tenant not found"),
		ObjectStore: ObjectStore{Backend: srv.Endpoint(), Bucket: "atende"},
	})
	edge := httptest.NewServer(router)
	defer edge.Close()
	port := strconv.Itoa(edge.Listener.Addr().(*net.TCPAddr).Port)
	public := "http://localhost:" + port // what cells write into presigned URLs
	ctx := context.Background()
	root := s3bucket.NewClient(srv.Endpoint(), versity.Region, "rootkey", "rootsecret12345")
	if err := s3bucket.EnsureBucket(ctx, root, "atende"); err != nil {
		t.Fatal(err)
	}
	if err := s3bucket.PutCORS(ctx, root, "atende", []string{"http://*.localhost:" + port}); err != nil {
		t.Fatal(err)
	}
	tenantID := controlplane.NewTenantID()
	access, secret, err := srv.TenantAccess("atende").GrantTenant(ctx, tenantID)
	if err != nil {
		t.Fatal(err)
	}
	pre := s3.NewPresignClient(s3bucket.NewClient(public, versity.Region, access, secret))
	key := controlplane.S3Prefix(tenantID) + "c/chat1/f1"
	png := []byte("\x89PNG\r\n\x1a\n<html><script>alert(1)</script>")

	putReq, err := pre.PresignPutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String("atende"), Key: aws.String(key), ContentType: aws.String("image/png"),
		ContentLength: aws.Int64(int64(len(png))), Metadata: map[string]string{"tenantid": tenantID}, IfNoneMatch: aws.String("*"),
	}, s3.WithPresignExpires(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(putReq.URL, public+"/atende/") {
		t.Fatalf("presigned URL %s does not point at the edge", putReq.URL)
	}

	t.Run("CORS preflight", func(t *testing.T) {
		for _, tc := range []struct {
			origin string
			allow  bool
		}{{"http://acme.localhost:" + port, true}, {"http://evil.example", false}} {
			st, h, _ := do(t, http.MethodOptions, putReq.URL, http.Header{
				"Origin": {tc.origin}, "Access-Control-Request-Method": {"PUT"},
				"Access-Control-Request-Headers": {"content-type,if-none-match,x-amz-meta-tenantid"},
			}, nil)
			allowed := st == 200 && h.Get("Access-Control-Allow-Origin") == tc.origin
			if allowed != tc.allow || h.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("preflight from %s: %d, allow-origin %q, nosniff %q; want allowed=%v", tc.origin, st,
					h.Get("Access-Control-Allow-Origin"), h.Get("X-Content-Type-Options"), tc.allow)
			}
		}
	})

	t.Run("presigned PUT", func(t *testing.T) {
		hdr := putReq.SignedHeader.Clone()
		hdr.Set("Origin", "http://acme.localhost:"+port)
		st, h, b := do(t, http.MethodPut, putReq.URL, hdr, png)
		if st != 200 || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Access-Control-Allow-Origin") != "http://acme.localhost:"+port {
			t.Fatalf("PUT: %d %s, headers %v", st, b, h)
		}
		if st, h, _ := do(t, http.MethodPut, putReq.URL, putReq.SignedHeader, png); st != 412 || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("second PUT: %d, want 412 with nosniff", st)
		}
	})

	t.Run("presigned GET", func(t *testing.T) {
		const disposition = `attachment; filename="page.html"`
		getReq, err := pre.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("atende"), Key: aws.String(key),
			ResponseContentDisposition: aws.String(disposition), ResponseContentType: aws.String("image/png")}, s3.WithPresignExpires(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		st, h, b := do(t, http.MethodGet, getReq.URL, nil, nil)
		if st != 200 || !bytes.Equal(b, png) {
			t.Fatalf("GET: %d %q", st, b)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Content-Disposition") != disposition || h.Get("Content-Type") != "image/png" {
			t.Fatalf("GET headers: nosniff %q, disposition %q, type %q", h.Get("X-Content-Type-Options"), h.Get("Content-Disposition"), h.Get("Content-Type"))
		}
		tampered := strings.Replace(getReq.URL, "filename%3D%22page.html", "filename%3D%22other.html", 1)
		if tampered == getReq.URL {
			t.Fatalf("could not tamper with %s", getReq.URL)
		}
		if st, h, _ := do(t, http.MethodGet, tampered, nil, nil); st != 403 || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("GET with a changed disposition: %d, want 403 with nosniff", st)
		}
	})

	t.Run("only browser methods and clean paths", func(t *testing.T) {
		rootPre := s3.NewPresignClient(s3bucket.NewClient(public, versity.Region, "rootkey", "rootsecret12345"))
		del, err := rootPre.PresignDeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("atende"), Key: aws.String(key)}, s3.WithPresignExpires(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if st, h, _ := do(t, http.MethodDelete, del.URL, nil, nil); st != 405 || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("DELETE through the edge: %d, want 405", st)
		}
		if _, err := root.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("atende"), Key: aws.String(key)}); err != nil {
			t.Fatalf("the object is gone: %v", err)
		}
		for _, p := range []string{"/atende/t/x/../../other/k", "/atende/./t/k", "/atende/t/%2e%2e/k"} {
			if st, _, _ := do(t, http.MethodGet, public+p, nil, nil); st != 400 {
				t.Errorf("GET %s: %d, want 400", p, st)
			}
		}
	})

	t.Run("the rest of the edge is unchanged", func(t *testing.T) {
		for _, tc := range []struct {
			url, want string
			status    int
		}{
			{public + "/", "landing", 200},
			{public + "/atende-other/x", "landing", 200},
			{"http://127.0.0.1:" + port + "/atende/" + key, "landing", 200},
			{public + "/atendex", "landing", 200},
		} {
			st, _, b := do(t, http.MethodGet, tc.url, nil, nil)
			if st != tc.status || string(b) != tc.want {
				t.Errorf("GET %s: %d %q, want %d %q", tc.url, st, b, tc.status, tc.want)
			}
		}
	})
}
