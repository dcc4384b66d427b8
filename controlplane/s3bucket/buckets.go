package s3bucket

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"atende/controlplane"
)

// TenantBuckets gives dedicated tenants a bucket of their own, controlplane.BucketName(<id>),
// created and removed with the client's (the platform's) credentials. It implements
// supervisor.TenantBuckets for an object store without per-tenant accounts: GrantTenantBucket
// returns no credentials, so cells keep the platform's (versity.DedicatedAccess adds accounts on
// the embedded gateway). It also lists the dedicated buckets for the sweep.
type TenantBuckets struct {
	// Client has the right to create, list and delete buckets.
	Client *s3.Client
}

var _ controlplane.ResourceLister = TenantBuckets{}

// EnsureTenantBucket creates the tenant's bucket unless it exists and returns its name.
func (b TenantBuckets) EnsureTenantBucket(ctx context.Context, tenantID string) (string, error) {
	name := controlplane.BucketName(tenantID)
	if !controlplane.IsTenantID(tenantID) {
		return "", controlplane.Errorf(controlplane.EInvalid, "tenant id %q cannot name a bucket", tenantID)
	}
	return name, EnsureBucket(ctx, b.Client, name)
}

// GrantTenantBucket returns empty credentials: the cell uses the platform's.
func (b TenantBuckets) GrantTenantBucket(context.Context, string) (string, string, error) {
	return "", "", nil
}

// RevokeTenantBucket does nothing: there are no per-tenant credentials.
func (b TenantBuckets) RevokeTenantBucket(context.Context, string) error { return nil }

// RemoveTenantBucket deletes every object of the tenant's bucket, in batches of at most 1000,
// then the bucket. A missing bucket is success.
func (b TenantBuckets) RemoveTenantBucket(ctx context.Context, tenantID string) error {
	name := controlplane.BucketName(tenantID)
	if err := (TenantPrefixes{Client: b.Client, Bucket: name}).removePrefix(ctx, ""); err != nil {
		return err
	}
	_, err := b.Client.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(name)})
	if err != nil && !isNoSuchBucket(err) {
		return fmt.Errorf("s3bucket: delete bucket %s: %w", name, err)
	}
	return nil
}

// TenantResources implements controlplane.ResourceLister: one controlplane.ResourceBucket per
// bucket named controlplane.BucketName of a tenant id.
func (b TenantBuckets) TenantResources(ctx context.Context) ([]controlplane.Resource, error) {
	out, err := b.Client.ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil {
		return nil, fmt.Errorf("s3bucket: list buckets: %w", err)
	}
	prefix := controlplane.BucketName("")
	res := []controlplane.Resource{}
	for _, bk := range out.Buckets {
		if id, ok := strings.CutPrefix(aws.ToString(bk.Name), prefix); ok && controlplane.IsTenantID(id) {
			res = append(res, controlplane.Resource{Kind: controlplane.ResourceBucket, Name: aws.ToString(bk.Name), TenantID: id})
		}
	}
	return res, nil
}

// ResourceKinds implements controlplane.ResourceLister.
func (b TenantBuckets) ResourceKinds() []string { return []string{controlplane.ResourceBucket} }

// isNoSuchBucket reports whether err is the object store's NoSuchBucket.
func isNoSuchBucket(err error) bool {
	var apiErr smithy.APIError
	var nsb *types.NoSuchBucket
	return errors.As(err, &nsb) || (errors.As(err, &apiErr) && apiErr.ErrorCode() == "NoSuchBucket")
}
