package versity

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/versity/versitygw/auth"

	"atende/controlplane"
)

// tenantClient is an S3 client (and its presigner) signing with one set of credentials.
type tenantClient struct {
	*s3.Client
	pre *s3.PresignClient
}

func newTenantClient(endpoint, access, secret string) tenantClient {
	c := s3.New(s3.Options{
		Region: Region, BaseEndpoint: aws.String(endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(access, secret, ""),
	})
	return tenantClient{Client: c, pre: s3.NewPresignClient(c)}
}

// statusOf returns the HTTP status of an S3 call's result: 200 without error.
func statusOf(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 200
	}
	var re *smithyhttp.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("no HTTP status in %v", err)
	}
	return re.HTTPStatusCode()
}

// send performs a presigned request with the headers it was signed with and returns the status,
// the response headers and the body.
func send(t *testing.T, method, url string, signed http.Header, body []byte) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == nil {
		req.Body = nil
	}
	for k, vs := range signed {
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

// presignPut presigns, as the cell does, a PUT of body as image/png that only succeeds while the
// key is free.
func (c tenantClient) presignPut(t *testing.T, bucket, key string, body []byte) (string, http.Header) {
	t.Helper()
	req, err := c.pre.PresignPutObject(context.Background(), &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), ContentType: aws.String("image/png"),
		ContentLength: aws.Int64(int64(len(body))), Metadata: map[string]string{"tenantid": "x"}, IfNoneMatch: aws.String("*"),
	}, s3.WithPresignExpires(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	return req.URL, req.SignedHeader
}

// presignGet presigns, as the cell does, a GET served as an attachment.
func (c tenantClient) presignGet(t *testing.T, bucket, key string) string {
	t.Helper()
	req, err := c.pre.PresignGetObject(context.Background(), &s3.GetObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key),
		ResponseContentDisposition: aws.String(`attachment; filename="shot.png"`), ResponseContentType: aws.String("image/png"),
	}, s3.WithPresignExpires(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	return req.URL
}

// TestTenantAccess runs against one embedded gateway: a tenant account reads and writes its own
// prefix through presigned URLs and direct calls, and is refused everything else; revoking it
// refuses its credentials at once; SyncTenants repairs the states a crash can leave behind.
func TestTenantAccess(t *testing.T) {
	srv, err := Start(t.TempDir(), "127.0.0.1:0", "root", "rootsecret123")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	const bucket = "atende"
	root := newTenantClient(srv.Endpoint(), "root", "rootsecret123")
	if _, err := root.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	ta := srv.TenantAccess(bucket)
	acme, globex := controlplane.NewTenantID(), controlplane.NewTenantID()
	clients := map[string]tenantClient{}
	for _, id := range []string{acme, globex, acme} {
		access, secret, err := ta.GrantTenant(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if wantA, wantS := ta.Credentials(id); access != wantA || secret != wantS || access != "tenant-"+id || len(secret) != 64 {
			t.Fatalf("credentials of %s: %q %q", id, access, secret)
		}
		clients[id] = newTenantClient(srv.Endpoint(), access, secret)
	}
	a := clients[acme]
	png := []byte("\x89PNG\r\n\x1a\nacme")
	own := controlplane.S3Prefix(acme) + "c/chat1/file1"
	foreign := controlplane.S3Prefix(globex) + "c/chat9/file9"
	if _, err := root.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(foreign), Body: strings.NewReader("globex secret")}); err != nil {
		t.Fatal(err)
	}
	exists := func(key string) bool {
		_, err := root.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		return err == nil
	}

	t.Run("own prefix", func(t *testing.T) {
		url, hdr := a.presignPut(t, bucket, own, png)
		if st, _, b := send(t, http.MethodPut, url, hdr, png); st != 200 {
			t.Fatalf("presigned PUT: %d %s", st, b)
		}
		if st, _, _ := send(t, http.MethodPut, url, hdr, png); st != 412 {
			t.Fatalf("second presigned PUT (If-None-Match: *): %d, want 412", st)
		}
		st, h, b := send(t, http.MethodGet, a.presignGet(t, bucket, own), nil, nil)
		if st != 200 || !bytes.Equal(b, png) || !strings.HasPrefix(h.Get("Content-Disposition"), "attachment") {
			t.Fatalf("presigned GET: %d %q, disposition %q", st, b, h.Get("Content-Disposition"))
		}
		head, err := a.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(own)})
		if err != nil || aws.ToInt64(head.ContentLength) != int64(len(png)) {
			t.Fatalf("HEAD: %v", err)
		}
		out, err := a.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(own), Range: aws.String("bytes=0-3")})
		if err != nil {
			t.Fatalf("ranged GET: %v", err)
		}
		first, _ := io.ReadAll(out.Body)
		out.Body.Close()
		if !bytes.Equal(first, png[:4]) {
			t.Fatalf("ranged GET: %q", first)
		}
	})

	t.Run("everything else is refused", func(t *testing.T) {
		url, hdr := a.presignPut(t, bucket, controlplane.S3Prefix(globex)+"c/chat9/evil", png)
		if st, _, _ := send(t, http.MethodPut, url, hdr, png); st != 403 {
			t.Errorf("presigned PUT under another tenant's prefix: %d, want 403", st)
		}
		if st, _, b := send(t, http.MethodGet, a.presignGet(t, bucket, foreign), nil, nil); st != 403 || bytes.Contains(b, []byte("globex secret")) {
			t.Errorf("presigned GET of another tenant's object: %d", st)
		}
		for _, key := range []string{
			controlplane.S3Prefix(acme) + "../" + globex + "/c/chat9/evil",
			controlplane.S3Prefix(acme) + "c/../../" + globex + "/c/chat9/evil",
			controlplane.S3Prefix(acme) + "./../../" + bucket + "-other/evil",
		} {
			url, hdr := a.presignPut(t, bucket, key, png)
			if st, _, _ := send(t, http.MethodPut, url, hdr, png); st != 403 {
				t.Errorf("presigned PUT to %s: %d, want 403", key, st)
			}
		}
		dotdot := controlplane.S3Prefix(acme) + "../" + globex + "/c/chat9/file9"
		if st, _, b := send(t, http.MethodGet, a.presignGet(t, bucket, dotdot), nil, nil); st != 403 || bytes.Contains(b, []byte("globex secret")) {
			t.Errorf("presigned GET of %s: %d, want 403", dotdot, st)
		}
		if exists(controlplane.S3Prefix(globex) + "c/chat9/evil") {
			t.Error("an object was written under the other tenant's prefix")
		}
		_, err := a.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String(bucket), Key: aws.String(controlplane.S3Prefix(acme) + "c/chat1/copy"),
			CopySource: aws.String(bucket + "/" + foreign)})
		policyDoc := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["tenant-` + acme + `"]},"Action":["s3:*"],"Resource":["arn:aws:s3:::atende","arn:aws:s3:::atende/*"]}]}`
		checks := []struct {
			name string
			err  error
		}{
			{"copy from another tenant's prefix", err},
			{"head another tenant's object", func() error {
				_, err := a.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(foreign)})
				return err
			}()},
			{"list another tenant's prefix", func() error {
				_, err := a.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(controlplane.S3Prefix(globex))})
				return err
			}()},
			{"list the bucket", func() error {
				_, err := a.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
				return err
			}()},
			{"list its own prefix (not needed, not granted)", func() error {
				_, err := a.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(controlplane.S3Prefix(acme))})
				return err
			}()},
			{"delete its own object (not needed, not granted)", func() error {
				_, err := a.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(own)})
				return err
			}()},
			{"delete another tenant's object", func() error {
				_, err := a.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(foreign)})
				return err
			}()},
			{"read the bucket policy", func() error {
				_, err := a.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: aws.String(bucket)})
				return err
			}()},
			{"replace the bucket policy", func() error {
				_, err := a.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(bucket), Policy: aws.String(policyDoc)})
				return err
			}()},
			{"delete the bucket policy", func() error {
				_, err := a.DeleteBucketPolicy(ctx, &s3.DeleteBucketPolicyInput{Bucket: aws.String(bucket)})
				return err
			}()},
			{"change the bucket CORS", func() error {
				_, err := a.PutBucketCors(ctx, &s3.PutBucketCorsInput{Bucket: aws.String(bucket), CORSConfiguration: &types.CORSConfiguration{
					CORSRules: []types.CORSRule{{AllowedOrigins: []string{"*"}, AllowedMethods: []string{"GET"}}}}})
				return err
			}()},
			{"create a bucket", func() error {
				_, err := a.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("acme-own-bucket")})
				return err
			}()},
			{"delete the bucket", func() error {
				_, err := a.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(bucket)})
				return err
			}()},
		}
		for _, c := range checks {
			if st := statusOf(t, c.err); st != 403 {
				t.Errorf("%s: status %d (%v), want 403", c.name, st, c.err)
			}
		}
		if !exists(own) || !exists(foreign) || exists(controlplane.S3Prefix(acme)+"c/chat1/copy") {
			t.Error("a refused call changed objects")
		}
		if _, err := root.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("acme-own-bucket")}); err == nil {
			t.Error("the tenant created a bucket")
		}
		if ids, err := grantedTenants(ctx, ta); err != nil || !sameSet(ids, []string{acme, globex}) {
			t.Errorf("policy grants %v (%v), want acme and globex", ids, err)
		}
	})

	t.Run("revoke", func(t *testing.T) {
		handedOut := a.presignGet(t, bucket, own)
		for range 2 {
			if err := ta.RevokeTenant(ctx, acme); err != nil {
				t.Fatal(err)
			}
		}
		if st, _, _ := send(t, http.MethodGet, handedOut, nil, nil); st != 403 {
			t.Errorf("URL presigned before the revocation: %d, want 403", st)
		}
		url, hdr := a.presignPut(t, bucket, controlplane.S3Prefix(acme)+"c/chat1/after", png)
		if st, _, _ := send(t, http.MethodPut, url, hdr, png); st != 403 {
			t.Errorf("PUT after the revocation: %d, want 403", st)
		}
		g := clients[globex]
		if st, _, b := send(t, http.MethodGet, g.presignGet(t, bucket, foreign), nil, nil); st != 200 || string(b) != "globex secret" {
			t.Errorf("the other tenant lost access: %d", st)
		}
		if _, err := srv.iam.GetUserAccount("tenant-" + acme); !errors.Is(err, auth.ErrNoSuchUser) {
			t.Errorf("account still there: %v", err)
		}
		if ids, _ := grantedTenants(ctx, ta); !slices.Equal(ids, []string{globex}) {
			t.Errorf("policy grants %v after the revocation", ids)
		}
		if err := ta.RevokeTenant(ctx, globex); err != nil {
			t.Fatal(err)
		}
		_, err := root.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: aws.String(bucket)})
		if st := statusOf(t, err); st != 404 {
			t.Errorf("policy after the last revocation: %d, want 404 (deleted)", st)
		}
	})

	t.Run("sync repairs", func(t *testing.T) {
		ghost, fresh := controlplane.NewTenantID(), controlplane.NewTenantID()
		// A crash between creating an account and adding its statement (or between removing
		// the statement and deleting the account) leaves an account without a statement.
		ghostAccess, ghostSecret := ta.Credentials(ghost)
		if err := srv.iam.CreateAccount(auth.Account{Access: ghostAccess, Secret: ghostSecret, Role: auth.RoleUser}); err != nil {
			t.Fatal(err)
		}
		// globex has an account with a stale secret and a hand-written policy without it.
		if _, _, err := ta.GrantTenant(ctx, globex); err != nil {
			t.Fatal(err)
		}
		stale := "stale-secret"
		if err := srv.iam.UpdateUserAccount("tenant-"+globex, auth.MutableProps{Secret: &stale}); err != nil {
			t.Fatal(err)
		}
		hand := `{"Version":"2012-10-17","Statement":[{"Sid":"by-hand","Effect":"Allow","Principal":{"AWS":["` + ghostAccess + `"]},"Action":["s3:GetObject"],"Resource":["arn:aws:s3:::atende/*"]}]}`
		if _, err := root.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(bucket), Policy: aws.String(hand)}); err != nil {
			t.Fatal(err)
		}
		if err := ta.SyncTenants(ctx, []string{globex, fresh}); err != nil {
			t.Fatal(err)
		}
		g := clients[globex]
		if st, _, _ := send(t, http.MethodGet, g.presignGet(t, bucket, foreign), nil, nil); st != 200 {
			t.Errorf("globex after sync: %d, want 200", st)
		}
		fa, fs := ta.Credentials(fresh)
		f := newTenantClient(srv.Endpoint(), fa, fs)
		key := controlplane.S3Prefix(fresh) + "c/x/y"
		url, hdr := f.presignPut(t, bucket, key, png)
		if st, _, _ := send(t, http.MethodPut, url, hdr, png); st != 200 {
			t.Errorf("fresh tenant after sync: %d, want 200", st)
		}
		gh := newTenantClient(srv.Endpoint(), ghostAccess, ghostSecret)
		if st, _, _ := send(t, http.MethodGet, gh.presignGet(t, bucket, foreign), nil, nil); st != 403 {
			t.Errorf("account of a tenant not passed to sync: %d, want 403", st)
		}
		accounts, err := srv.iam.ListUserAccounts()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, acc := range accounts {
			names = append(names, acc.Access)
		}
		if !sameSet(names, []string{"tenant-" + globex, "tenant-" + fresh}) {
			t.Errorf("accounts after sync: %v", names)
		}
		out, err := root.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: aws.String(bucket)})
		if err != nil {
			t.Fatal(err)
		}
		var doc policy
		if err := json.Unmarshal([]byte(aws.ToString(out.Policy)), &doc); err != nil {
			t.Fatal(err)
		}
		var sids []string
		for _, st := range doc.Statement {
			sids = append(sids, st.Sid)
		}
		if !sameSet(sids, []string{"tenant-" + globex, "tenant-" + fresh}) {
			t.Errorf("policy statements after sync: %v", sids)
		}
		if err := ta.SyncTenants(ctx, nil); err != nil {
			t.Fatal(err)
		}
		if accounts, _ := srv.iam.ListUserAccounts(); len(accounts) != 0 {
			t.Errorf("accounts left after syncing no tenants: %v", accounts)
		}
	})

	t.Run("tenant ids are checked", func(t *testing.T) {
		for _, id := range []string{"", "a*", "a?b", "a/b", strings.Repeat("a", 65)} {
			if _, _, err := ta.GrantTenant(ctx, id); err == nil {
				t.Errorf("GrantTenant(%q) accepted", id)
			}
		}
	})
}

// grantedTenants returns the tenants the bucket policy grants.
func grantedTenants(ctx context.Context, ta *TenantAccess) ([]string, error) {
	accounts, err := ta.accounts()
	if err != nil {
		return nil, err
	}
	return ta.grantedTenants(ctx, accounts)
}

// sameSet reports whether a and b hold the same strings, in any order.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
