package versity

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/versity/versitygw/auth"

	"atende/controlplane"
)

// TenantAccessKeyPrefix starts the access key of every tenant account: "tenant-<tenantId>".
// Accounts with this prefix belong to TenantAccess; SyncTenants deletes those of tenants it is
// not given.
const TenantAccessKeyPrefix = "tenant-"

// TenantActions are the S3 actions a tenant account may perform, and only on the objects under
// its tenant's prefix: s3:GetObject (versitygw authorizes GET, ranged GET and HEAD of an object
// with it) and s3:PutObject (PUT, the conditional If-None-Match: * PUT included). Nothing else is
// granted: no listing, no deletion, no copying from other prefixes, no bucket, CORS or policy
// changes, no bucket creation. The cell needs no more (cell/s3blob).
var TenantActions = []string{"s3:GetObject", "s3:PutObject"}

// secretLabel separates tenant secrets from any other use of the root secret as an HMAC key.
const secretLabel = "atende tenant S3 secret v1\x00"

// TenantAccess gives each tenant an account of its own on the embedded gateway, allowed only
// TenantActions on "<bucket>/t/<tenantId>/*", so a cell can neither read nor write another
// tenant's attachments with its credentials.
//
// An account is an internal-IAM user (role "user") with access key "tenant-<tenantId>" and a
// secret derived from the root secret with HMAC-SHA256 (hex, 64 characters), so nothing needs
// storing and the same tenant always gets the same credentials while the root secret stays. The
// permissions are statements of the bucket policy, one per tenant (Sid "tenant-<tenantId>").
// versitygw only stores a policy whose principals exist, so an account is created before its
// statement is added and deleted after its statement is removed. The bucket policy belongs to
// TenantAccess: every change rewrites it from the tenant statements alone (statements added by
// hand are dropped), and with no tenant left it is deleted, which leaves the bucket to the root
// account alone (its ACL grants nobody else anything).
//
// The methods are safe for concurrent use within one process; they serialise on a mutex, since
// each one reads, changes and writes the whole policy.
type TenantAccess struct {
	iam    auth.IAMService
	client *s3.Client
	bucket string
	key    []byte
	mu     sync.Mutex
}

// TenantAccess returns the tenant-account manager for bucket on s, which uses the root account
// for policy changes and the root secret as the key of derived tenant secrets.
func (s *Server) TenantAccess(bucket string) *TenantAccess {
	return &TenantAccess{
		iam: s.iam,
		client: s3.New(s3.Options{
			Region: Region, BaseEndpoint: aws.String(s.endpoint), UsePathStyle: true,
			Credentials: credentials.NewStaticCredentialsProvider(s.accessKey, s.secretKey, ""),
		}),
		bucket: bucket,
		key:    []byte(s.secretKey),
	}
}

// Credentials returns the access key and secret of tenantID's account, whether or not it exists.
// It does no I/O.
func (a *TenantAccess) Credentials(tenantID string) (accessKey, secretKey string) {
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(secretLabel + tenantID))
	return TenantAccessKeyPrefix + tenantID, hex.EncodeToString(m.Sum(nil))
}

// GrantTenant ensures tenantID's account exists with its current secret and that the bucket
// policy lets it perform TenantActions under controlplane.S3Prefix(tenantID), and returns its
// credentials. It is idempotent. It returns an error for a tenant id that is not 1 to 64 ASCII
// letters, digits, '-' or '_' (an id with '*' or '?' would widen the policy's resource pattern).
func (a *TenantAccess) GrantTenant(ctx context.Context, tenantID string) (accessKey, secretKey string, err error) {
	if err := checkTenantID(tenantID); err != nil {
		return "", "", err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	accounts, err := a.accounts()
	if err != nil {
		return "", "", err
	}
	if err := a.ensureAccount(tenantID, accounts); err != nil {
		return "", "", err
	}
	granted, err := a.grantedTenants(ctx, accounts)
	if err != nil {
		return "", "", err
	}
	if !slices.Contains(granted, tenantID) {
		if err := a.putPolicy(ctx, append(granted, tenantID)); err != nil {
			return "", "", err
		}
	}
	accessKey, secretKey = a.Credentials(tenantID)
	return accessKey, secretKey, nil
}

// RevokeTenant removes tenantID's statement from the bucket policy, then deletes its account:
// from then on its credentials are refused (403 InvalidAccessKeyId), presigned URLs already
// handed out included. It is idempotent.
func (a *TenantAccess) RevokeTenant(ctx context.Context, tenantID string) error {
	if err := checkTenantID(tenantID); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	accounts, err := a.accounts()
	if err != nil {
		return err
	}
	granted, err := a.grantedTenants(ctx, accounts)
	if err != nil {
		return err
	}
	if i := slices.Index(granted, tenantID); i >= 0 {
		if err := a.putPolicy(ctx, slices.Delete(granted, i, i+1)); err != nil {
			return err
		}
	}
	access, _ := a.Credentials(tenantID)
	if _, ok := accounts[access]; !ok {
		return nil // nothing to delete
	}
	if err := a.iam.DeleteUserAccount(access); err != nil && !errors.Is(err, auth.ErrNoSuchUser) {
		return fmt.Errorf("versity: delete account %s: %w", access, err)
	}
	return nil
}

// SyncTenants makes the tenant accounts and the bucket policy match tenantIDs exactly: it
// ensures every listed tenant's account, rewrites the policy with their statements only, then
// deletes every other account whose access key starts with TenantAccessKeyPrefix. It repairs
// whatever a crash between the steps of GrantTenant or RevokeTenant left behind.
func (a *TenantAccess) SyncTenants(ctx context.Context, tenantIDs []string) error {
	keep := make(map[string]bool, len(tenantIDs))
	for _, id := range tenantIDs {
		if err := checkTenantID(id); err != nil {
			return err
		}
		keep[id] = true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	accounts, err := a.accounts()
	if err != nil {
		return err
	}
	for _, id := range tenantIDs {
		if err := a.ensureAccount(id, accounts); err != nil {
			return err
		}
	}
	if err := a.putPolicy(ctx, tenantIDs); err != nil {
		return err
	}
	for _, acc := range accounts {
		id, ok := strings.CutPrefix(acc.Access, TenantAccessKeyPrefix)
		if !ok || keep[id] {
			continue
		}
		if err := a.iam.DeleteUserAccount(acc.Access); err != nil && !errors.Is(err, auth.ErrNoSuchUser) {
			return fmt.Errorf("versity: delete account %s: %w", acc.Access, err)
		}
	}
	return nil
}

// accounts returns the gateway's accounts (the root account excepted) by access key, read once:
// each lookup of the internal IAM service reads its whole file.
func (a *TenantAccess) accounts() (map[string]auth.Account, error) {
	list, err := a.iam.ListUserAccounts()
	if err != nil {
		return nil, fmt.Errorf("versity: list accounts: %w", err)
	}
	m := make(map[string]auth.Account, len(list))
	for _, acc := range list {
		m[acc.Access] = acc
	}
	return m, nil
}

// ensureAccount creates tenantID's account, or resets its secret and role if they differ (the
// root secret changed, or someone edited it), and records the result in accounts.
func (a *TenantAccess) ensureAccount(tenantID string, accounts map[string]auth.Account) error {
	access, secret := a.Credentials(tenantID)
	want := auth.Account{Access: access, Secret: secret, Role: auth.RoleUser}
	acc, ok := accounts[access]
	switch {
	case !ok:
		if err := a.iam.CreateAccount(want); err != nil {
			return fmt.Errorf("versity: create account %s: %w", access, err)
		}
	case acc.Secret != secret || acc.Role != auth.RoleUser:
		if err := a.iam.UpdateUserAccount(access, auth.MutableProps{Secret: &secret, Role: auth.RoleUser}); err != nil {
			return fmt.Errorf("versity: update account %s: %w", access, err)
		}
	default:
		return nil
	}
	accounts[access] = want
	return nil
}

// policy is the part of an S3 bucket policy document that TenantAccess writes.
type policy struct {
	Version   string      `json:"Version"`
	Statement []statement `json:"Statement"`
}

// statement is one statement of a bucket policy. versitygw names principals by access key.
type statement struct {
	Sid       string              `json:"Sid"`
	Effect    string              `json:"Effect"`
	Principal map[string][]string `json:"Principal"`
	Action    []string            `json:"Action"`
	Resource  []string            `json:"Resource"`
}

// grantedTenants returns the ids of the tenants that have a statement in the bucket policy and
// an account in accounts (a statement naming a missing account could not be written back).
func (a *TenantAccess) grantedTenants(ctx context.Context, accounts map[string]auth.Account) ([]string, error) {
	out, err := a.client.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: aws.String(a.bucket)})
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode() == "NoSuchBucketPolicy" {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("versity: read policy of %s: %w", a.bucket, err)
	}
	var doc struct {
		Statement []struct{ Sid string }
	}
	if err := json.Unmarshal([]byte(aws.ToString(out.Policy)), &doc); err != nil {
		// Not a policy TenantAccess wrote: it is replaced by the next write.
		return nil, nil
	}
	var ids []string
	for _, st := range doc.Statement {
		id, ok := strings.CutPrefix(st.Sid, TenantAccessKeyPrefix)
		if !ok || checkTenantID(id) != nil || slices.Contains(ids, id) {
			continue
		}
		if _, ok := accounts[TenantAccessKeyPrefix+id]; !ok {
			continue
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// putPolicy replaces the bucket policy with one statement per tenant of ids (sorted by id), or
// deletes it when ids is empty.
func (a *TenantAccess) putPolicy(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		_, err := a.client.DeleteBucketPolicy(ctx, &s3.DeleteBucketPolicyInput{Bucket: aws.String(a.bucket)})
		var apiErr smithy.APIError
		if err != nil && !(errors.As(err, &apiErr) && apiErr.ErrorCode() == "NoSuchBucketPolicy") {
			return fmt.Errorf("versity: delete policy of %s: %w", a.bucket, err)
		}
		return nil
	}
	doc, err := json.Marshal(a.policy(ids))
	if err != nil {
		return fmt.Errorf("versity: encode policy: %w", err)
	}
	if _, err := a.client.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(a.bucket), Policy: aws.String(string(doc))}); err != nil {
		return fmt.Errorf("versity: write policy of %s: %w", a.bucket, err)
	}
	return nil
}

// policy returns the bucket policy granting each tenant of ids TenantActions on its prefix.
func (a *TenantAccess) policy(ids []string) policy {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	p := policy{Version: "2012-10-17"}
	for _, id := range ids {
		access, _ := a.Credentials(id)
		p.Statement = append(p.Statement, statement{
			Sid:       TenantAccessKeyPrefix + id,
			Effect:    "Allow",
			Principal: map[string][]string{"AWS": {access}},
			Action:    TenantActions,
			Resource:  []string{"arn:aws:s3:::" + a.bucket + "/" + controlplane.S3Prefix(id) + "*"},
		})
	}
	return p
}

// checkTenantID accepts 1 to 64 ASCII letters, digits, '-' and '_' (controlplane.NewTenantID
// makes 26 of [a-z2-7]).
func checkTenantID(id string) error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("versity: tenant id %q must be 1 to 64 characters", id)
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("versity: tenant id %q may hold only letters, digits, '-' and '_'", id)
		}
	}
	return nil
}
