package s3bucket_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"atende/controlplane"
	"atende/controlplane/s3bucket"
	"atende/controlplane/versity"
)

// TestBucket runs against one embedded versitygw (one per process): bucket creation is
// idempotent, the CORS rules answer browser preflights from tenant hosts only, and a tenant's
// prefix is deleted without touching another tenant's.
func TestBucket(t *testing.T) {
	srv, err := versity.Start(t.TempDir(), "127.0.0.1:0", "rootkey", "rootsecret12345")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	c := s3bucket.NewClient(srv.Endpoint(), versity.Region, "rootkey", "rootsecret12345")
	for range 2 {
		if err := s3bucket.EnsureBucket(ctx, c, "atende"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s3bucket.PutCORS(ctx, c, "atende", []string{"http://*.localhost:8080", "https://*.localhost:8080"}); err != nil {
		t.Fatal(err)
	}

	t.Run("preflight", func(t *testing.T) {
		for _, tc := range []struct {
			origin string
			method string
			allow  bool
		}{
			{"http://acme.localhost:8080", "PUT", true},
			{"https://globex.localhost:8080", "GET", true},
			{"http://acme.localhost:9999", "PUT", false},
			{"http://evil.example", "PUT", false},
			{"http://acme.localhost:8080", "DELETE", false},
		} {
			req, _ := http.NewRequest(http.MethodOptions, srv.Endpoint()+"/atende/t/x/c/y/file", nil)
			req.Header.Set("Origin", tc.origin)
			req.Header.Set("Access-Control-Request-Method", tc.method)
			req.Header.Set("Access-Control-Request-Headers", "content-type")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got := resp.Header.Get("Access-Control-Allow-Origin")
			allowed := resp.StatusCode == 200 && got == tc.origin && strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), tc.method)
			if allowed != tc.allow {
				t.Errorf("%s %s: status %d, allow-origin %q, methods %q; want allowed=%v", tc.method, tc.origin,
					resp.StatusCode, got, resp.Header.Get("Access-Control-Allow-Methods"), tc.allow)
			}
		}
	})

	t.Run("remove tenant prefix", func(t *testing.T) {
		a := &controlplane.Tenant{ID: "aaaa"}
		for _, key := range []string{"t/aaaa/c/1/x", "t/aaaa/c/2/y", "t/bbbb/c/1/x", "t/aaaab/c/1/z"} {
			if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("atende"), Key: aws.String(key), Body: strings.NewReader("data")}); err != nil {
				t.Fatal(err)
			}
		}
		rm := s3bucket.TenantPrefixes{Client: c, Bucket: "atende"}
		if err := rm.RemoveTenantData(ctx, a); err != nil {
			t.Fatal(err)
		}
		if err := rm.RemoveTenantData(ctx, a); err != nil {
			t.Fatalf("second removal: %v", err)
		}
		out, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("atende")})
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, o := range out.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
		if strings.Join(keys, ",") != "t/aaaab/c/1/z,t/bbbb/c/1/x" {
			t.Fatalf("left %v", keys)
		}
		if err := (s3bucket.TenantPrefixes{Client: c, Bucket: "missing"}).RemoveTenantData(ctx, a); err != nil {
			t.Fatalf("missing bucket: %v", err)
		}
	})
}
