package versity

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// TestPresignedURLsAreEnforced checks the properties Atende relies on: a presigned PUT only
// accepts the signed content type, a tampered signature is refused and an expired URL is refused.
func TestPresignedURLsAreEnforced(t *testing.T) {
	srv, err := Start(t.TempDir(), "127.0.0.1:0", "root", "rootsecret123")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	client := s3.New(s3.Options{
		Region:       Region,
		BaseEndpoint: aws.String(srv.Endpoint()),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider("root", "rootsecret123", ""),
	})
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("atende-test")}); err != nil {
		t.Fatal(err)
	}
	pre := s3.NewPresignClient(client)
	body := []byte("\x89PNG\r\n\x1a\nhello")
	put := func(ttl time.Duration, ct string, mutate func(string) string) int {
		req, err := pre.PresignPutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String("atende-test"), Key: aws.String("t/x/a"), ContentType: aws.String("image/png"),
			ContentLength: aws.Int64(int64(len(body))),
		}, s3.WithPresignExpires(ttl))
		if err != nil {
			t.Fatal(err)
		}
		u := req.URL
		if mutate != nil {
			if u2 := mutate(u); u2 == u && ttl != time.Second {
				t.Fatalf("mutation left the URL unchanged: %s", u)
			} else {
				u = u2
			}
		}
		hr, _ := http.NewRequest(http.MethodPut, u, bytes.NewReader(body))
		hr.Header.Set("Content-Type", ct)
		resp, err := http.DefaultClient.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := put(time.Minute, "image/png", nil); got != 200 {
		t.Fatalf("valid presigned PUT: status %d, want 200", got)
	}
	if got := put(time.Minute, "text/html", nil); got != 403 {
		t.Fatalf("PUT with another content type: status %d, want 403", got)
	}
	if got := put(time.Minute, "image/png", func(u string) string { return strings.Replace(u, "/t/x/a?", "/t/y/a?", 1) }); got != 403 {
		t.Fatalf("PUT to another key with the same signature: status %d, want 403", got)
	}
	if got := put(time.Second, "image/png", func(u string) string { time.Sleep(2100 * time.Millisecond); return u }); got != 403 {
		t.Fatalf("expired PUT: status %d, want 403", got)
	}
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("atende-test"), Key: aws.String("t/x/a")})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(out.Body)
	if !bytes.Equal(got, body) {
		t.Fatalf("stored bytes differ: %q", got)
	}
}
