package versity

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/versity/versitygw/auth"

	"atende/controlplane"
	"atende/controlplane/s3bucket"
)

// DedicatedAccessKeyPrefix starts the access key of every dedicated tenant's account:
// "dedicated-<tenantId>". TenantAccess never touches these accounts (its SyncTenants manages
// TenantAccessKeyPrefix only).
const DedicatedAccessKeyPrefix = "dedicated-"

// dedicatedSecretLabel separates dedicated tenants' secrets from any other use of the root secret.
const dedicatedSecretLabel = "atende dedicated S3 secret v1\x00"

// DedicatedAccess gives each dedicated tenant a bucket of its own on the embedded gateway,
// controlplane.BucketName(<id>) = "atende-t-<id>", and an account "dedicated-<id>" allowed only
// TenantActions (get and put objects) on that bucket's objects, through the bucket's policy. The
// account's secret is derived from the root secret with HMAC-SHA256, so nothing needs storing.
// It implements supervisor.TenantBuckets and, for the sweep, controlplane.ResourceLister
// (buckets and dedicated accounts).
type DedicatedAccess struct {
	s3bucket.TenantBuckets
	iam auth.IAMService
	key []byte
	mu  sync.Mutex
}

// DedicatedAccess returns the dedicated-bucket manager of s, which uses the root account for
// buckets and policies and the root secret as the key of derived secrets.
func (s *Server) DedicatedAccess() *DedicatedAccess {
	return &DedicatedAccess{
		TenantBuckets: s3bucket.TenantBuckets{Client: s3.New(s3.Options{
			Region: Region, BaseEndpoint: aws.String(s.endpoint), UsePathStyle: true,
			Credentials: credentials.NewStaticCredentialsProvider(s.accessKey, s.secretKey, ""),
		})},
		iam: s.iam,
		key: []byte(s.secretKey),
	}
}

// Credentials returns the access key and secret of tenantID's dedicated account, whether or not
// it exists. It does no I/O.
func (a *DedicatedAccess) Credentials(tenantID string) (accessKey, secretKey string) {
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(dedicatedSecretLabel + tenantID))
	return DedicatedAccessKeyPrefix + tenantID, hex.EncodeToString(m.Sum(nil))
}

// GrantTenantBucket ensures tenantID's account exists with its current secret and that its
// bucket's policy lets it perform TenantActions on every object of the bucket, and returns its
// credentials. The bucket must exist (EnsureTenantBucket). It is idempotent.
func (a *DedicatedAccess) GrantTenantBucket(ctx context.Context, tenantID string) (string, string, error) {
	if err := checkTenantID(tenantID); err != nil {
		return "", "", err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	access, secret := a.Credentials(tenantID)
	want := auth.Account{Access: access, Secret: secret, Role: auth.RoleUser}
	list, err := a.iam.ListUserAccounts()
	if err != nil {
		return "", "", fmt.Errorf("versity: list accounts: %w", err)
	}
	found := false
	for _, acc := range list {
		if acc.Access != access {
			continue
		}
		found = true
		if acc.Secret != secret || acc.Role != auth.RoleUser {
			if err := a.iam.UpdateUserAccount(access, auth.MutableProps{Secret: &secret, Role: auth.RoleUser}); err != nil {
				return "", "", fmt.Errorf("versity: update account %s: %w", access, err)
			}
		}
	}
	if !found {
		if err := a.iam.CreateAccount(want); err != nil {
			return "", "", fmt.Errorf("versity: create account %s: %w", access, err)
		}
	}
	bucket := controlplane.BucketName(tenantID)
	doc, err := json.Marshal(policy{Version: "2012-10-17", Statement: []statement{{
		Sid: DedicatedAccessKeyPrefix + tenantID, Effect: "Allow", Principal: map[string][]string{"AWS": {access}},
		Action: TenantActions, Resource: []string{"arn:aws:s3:::" + bucket + "/*"},
	}}})
	if err != nil {
		return "", "", fmt.Errorf("versity: encode policy: %w", err)
	}
	if _, err := a.Client.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(bucket), Policy: aws.String(string(doc))}); err != nil {
		return "", "", fmt.Errorf("versity: write policy of %s: %w", bucket, err)
	}
	return access, secret, nil
}

// RevokeTenantBucket deletes the policy of tenantID's bucket (if the bucket still exists), then
// its account: from then on its credentials are refused. It is idempotent.
func (a *DedicatedAccess) RevokeTenantBucket(ctx context.Context, tenantID string) error {
	if err := checkTenantID(tenantID); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	bucket := controlplane.BucketName(tenantID)
	_, err := a.Client.DeleteBucketPolicy(ctx, &s3.DeleteBucketPolicyInput{Bucket: aws.String(bucket)})
	var apiErr smithy.APIError
	if err != nil && !(errors.As(err, &apiErr) && (apiErr.ErrorCode() == "NoSuchBucketPolicy" || apiErr.ErrorCode() == "NoSuchBucket")) {
		return fmt.Errorf("versity: delete policy of %s: %w", bucket, err)
	}
	access, _ := a.Credentials(tenantID)
	if err := a.iam.DeleteUserAccount(access); err != nil && !errors.Is(err, auth.ErrNoSuchUser) {
		return fmt.Errorf("versity: delete account %s: %w", access, err)
	}
	return nil
}

// TenantResources implements controlplane.ResourceLister: the dedicated buckets
// (controlplane.ResourceBucket) and the dedicated accounts (controlplane.ResourceCredentials,
// named by access key).
func (a *DedicatedAccess) TenantResources(ctx context.Context) ([]controlplane.Resource, error) {
	out, err := a.TenantBuckets.TenantResources(ctx)
	if err != nil {
		return nil, err
	}
	list, err := a.iam.ListUserAccounts()
	if err != nil {
		return nil, fmt.Errorf("versity: list accounts: %w", err)
	}
	for _, acc := range list {
		if id, ok := strings.CutPrefix(acc.Access, DedicatedAccessKeyPrefix); ok && id != "" {
			out = append(out, controlplane.Resource{Kind: controlplane.ResourceCredentials, Name: acc.Access, TenantID: id})
		}
	}
	return out, nil
}

// ResourceKinds implements controlplane.ResourceLister.
func (a *DedicatedAccess) ResourceKinds() []string {
	return []string{controlplane.ResourceBucket, controlplane.ResourceCredentials}
}
