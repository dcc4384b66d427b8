package s3bucket

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"atende/controlplane"
)

var _ controlplane.ResourceLister = TenantPrefixes{}

// TenantResources implements controlplane.ResourceLister: one controlplane.ResourceObjectPrefix
// per prefix "t/<tenantId>/" (controlplane.S3Prefix) of the bucket that holds at least one object,
// found by listing "t/" with the delimiter "/". A missing bucket holds none.
func (p TenantPrefixes) TenantResources(ctx context.Context) ([]controlplane.Resource, error) {
	root := strings.TrimSuffix(controlplane.S3Prefix(""), "/") // "t/"
	out := []controlplane.Resource{}
	pages := s3.NewListObjectsV2Paginator(p.Client, &s3.ListObjectsV2Input{Bucket: aws.String(p.Bucket), Prefix: aws.String(root), Delimiter: aws.String("/")})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			var apiErr smithy.APIError
			if errors.As(err, &apiErr) && apiErr.ErrorCode() == "NoSuchBucket" {
				return out, nil
			}
			return nil, fmt.Errorf("s3bucket: list %s: %w", root, err)
		}
		for _, cp := range page.CommonPrefixes {
			prefix := aws.ToString(cp.Prefix)
			id := strings.TrimSuffix(strings.TrimPrefix(prefix, root), "/")
			if id != "" && !strings.Contains(id, "/") {
				out = append(out, controlplane.Resource{Kind: controlplane.ResourceObjectPrefix, Name: prefix, TenantID: id})
			}
		}
	}
	return out, nil
}

// DescribeTenantData names what RemoveTenantData deletes, for teardown events.
func (p TenantPrefixes) DescribeTenantData(t *controlplane.Tenant) string {
	return "objects under " + controlplane.S3Prefix(t.ID) + " in bucket " + p.Bucket
}

// ResourceKinds implements controlplane.ResourceLister.
func (p TenantPrefixes) ResourceKinds() []string { return []string{controlplane.ResourceObjectPrefix} }
