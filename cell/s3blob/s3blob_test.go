package s3blob

import (
	"context"
	"testing"
	"time"

	"atende/cell"
)

// TestKeysOutsideThePrefixAreRefused: nothing is presigned or read outside "t/<tenantId>/".
func TestKeysOutsideThePrefixAreRefused(t *testing.T) {
	b, err := New(Config{Endpoint: "http://127.0.0.1:1", PublicEndpoint: "http://127.0.0.1:1", Region: "us-east-1",
		Bucket: "atende", Prefix: "t/acme/", AccessKey: "a", SecretKey: "b"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, key := range []string{"t/globex/c/1/x", "t/acme/../globex/c/1/x", "x", "t/acmeX/c/1"} {
		if _, _, err := b.PresignPut(ctx, key, "image/png", 1, "acme", time.Minute); cell.ErrorCode(err) != cell.EForbidden {
			t.Errorf("PresignPut(%q): %v, want forbidden", key, err)
		}
		if _, err := b.PresignGet(ctx, key, "f", "image/png", time.Minute); cell.ErrorCode(err) != cell.EForbidden {
			t.Errorf("PresignGet(%q): %v, want forbidden", key, err)
		}
	}
	if got := b.ChatKey("c1", "r"); got != "t/acme/c/c1/r" {
		t.Fatalf("ChatKey = %q", got)
	}
	if _, _, err := b.PresignPut(ctx, b.ChatKey("c1", "r"), "image/png", 1, "acme", time.Minute); err != nil {
		t.Fatalf("own key refused: %v", err)
	}
	if _, err := New(Config{Bucket: "atende", Prefix: "t/acme"}); err == nil {
		t.Fatal("prefix without trailing slash accepted")
	}
}
