package versity

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"atende/controlplane"
)

// TestDedicatedAccess checks the dedicated tier's buckets on the real embedded gateway: each
// dedicated tenant gets its bucket (idempotently) and credentials that read and write that bucket
// only (not another tenant's bucket, not the shared one); the shared tier's SyncTenants leaves
// dedicated accounts alone; the sweep lists buckets and accounts; revocation refuses the
// credentials, and removal deletes the objects and the bucket (each twice, idempotent).
func TestDedicatedAccess(t *testing.T) {
	srv, err := Start(t.TempDir(), "127.0.0.1:0", "root", "rootsecret123")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	root := newTenantClient(srv.Endpoint(), "root", "rootsecret123")
	if _, err := root.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("atende")}); err != nil {
		t.Fatal(err)
	}
	shared, da := srv.TenantAccess("atende"), srv.DedicatedAccess()
	acme, globex := controlplane.NewTenantID(), controlplane.NewTenantID()
	clients := map[string]tenantClient{}
	for _, id := range []string{acme, globex, acme} {
		bucket, err := da.EnsureTenantBucket(ctx, id)
		if err != nil || bucket != "atende-t-"+id {
			t.Fatalf("EnsureTenantBucket(%s) = %q, %v", id, bucket, err)
		}
		access, secret, err := da.GrantTenantBucket(ctx, id)
		if err != nil || access != "dedicated-"+id || len(secret) != 64 {
			t.Fatalf("GrantTenantBucket(%s) = %q, %v", id, access, err)
		}
		clients[id] = newTenantClient(srv.Endpoint(), access, secret)
	}
	put := func(c tenantClient, bucket, key string) int {
		_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader("x")})
		return statusOf(t, err)
	}
	get := func(c tenantClient, bucket, key string) int {
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		if err == nil {
			out.Body.Close()
		}
		return statusOf(t, err)
	}
	a, g := clients[acme], clients[globex]
	keyA := controlplane.S3Prefix(acme) + "c/1/a"
	if st := put(a, "atende-t-"+acme, keyA); st != 200 {
		t.Fatalf("acme puts in its bucket: %d", st)
	}
	if st := get(a, "atende-t-"+acme, keyA); st != 200 {
		t.Fatalf("acme reads its bucket: %d", st)
	}
	for _, tc := range []struct {
		name string
		st   int
	}{
		{"acme puts in globex's bucket", put(a, "atende-t-"+globex, controlplane.S3Prefix(acme)+"x")},
		{"globex reads acme's bucket", get(g, "atende-t-"+acme, keyA)},
		{"acme puts in the shared bucket under its prefix", put(a, "atende", controlplane.S3Prefix(acme)+"x")},
	} {
		if tc.st != 403 {
			t.Errorf("%s: %d, want 403", tc.name, tc.st)
		}
	}
	if err := shared.SyncTenants(ctx, nil); err != nil { // no shared-tier tenant: every tenant- account goes
		t.Fatal(err)
	}
	if st := get(a, "atende-t-"+acme, keyA); st != 200 {
		t.Fatalf("after the shared tier's sync, acme reads its bucket: %d", st)
	}
	res, err := da.TenantResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range res {
		names = append(names, r.Kind+":"+r.Name)
	}
	slices.Sort(names)
	want := []string{"bucket:atende-t-" + acme, "bucket:atende-t-" + globex, "credentials:dedicated-" + acme, "credentials:dedicated-" + globex}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("resources %v, want %v", names, want)
	}
	for range 2 {
		if err := da.RevokeTenantBucket(ctx, acme); err != nil {
			t.Fatal(err)
		}
	}
	if st := get(a, "atende-t-"+acme, keyA); st != 403 {
		t.Errorf("acme reads its bucket after revocation: %d", st)
	}
	for range 2 {
		if err := da.RemoveTenantBucket(ctx, acme); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := root.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("atende-t-" + acme)}); statusOf(t, err) != 404 {
		t.Errorf("acme's bucket after removal: %v", err)
	}
	if st := get(g, "atende-t-"+globex, "nothing"); st != 404 {
		t.Errorf("globex still reaches its bucket: %d, want 404 (no such key)", st)
	}
}
