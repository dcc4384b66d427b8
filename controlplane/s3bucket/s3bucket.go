// Package s3bucket prepares and cleans the object store bucket that cells share (one prefix
// "t/<tenantId>/" per tenant), on aws-sdk-go-v2: it creates the bucket, sets the CORS rules that
// let browsers on tenant hosts PUT to presigned URLs, and deletes a deleted tenant's prefix.
package s3bucket

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"atende/controlplane"
)

// NewClient returns an S3 client for endpoint (path-style addressing, as versitygw and MinIO
// expect) with static credentials.
func NewClient(endpoint, region, accessKey, secretKey string) *s3.Client {
	if region == "" {
		region = "us-east-1"
	}
	return s3.New(s3.Options{
		Region: region, BaseEndpoint: aws.String(endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(accessKey, secretKey, ""),
	})
}

// EnsureBucket creates bucket unless it exists and is ours.
func EnsureBucket(ctx context.Context, c *s3.Client, bucket string) error {
	if _, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)}); err == nil {
		return nil
	}
	_, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	var owned *types.BucketAlreadyOwnedByYou
	if err != nil && !errors.As(err, &owned) {
		return fmt.Errorf("s3bucket: create bucket %s: %w", bucket, err)
	}
	return nil
}

// PutCORS replaces the bucket's CORS configuration with one rule: origins (exact origins or
// patterns with one "*", e.g. "http://*.localhost:8080") may send GET, PUT and HEAD with any
// header, and read the ETag header; browsers may cache the preflight for an hour.
func PutCORS(ctx context.Context, c *s3.Client, bucket string, origins []string) error {
	_, err := c.PutBucketCors(ctx, &s3.PutBucketCorsInput{
		Bucket: aws.String(bucket),
		CORSConfiguration: &types.CORSConfiguration{CORSRules: []types.CORSRule{{
			AllowedOrigins: origins,
			AllowedMethods: []string{"GET", "PUT", "HEAD"},
			AllowedHeaders: []string{"*"},
			ExposeHeaders:  []string{"ETag"},
			MaxAgeSeconds:  aws.Int32(3600),
		}}},
	})
	if err != nil {
		return fmt.Errorf("s3bucket: put CORS of %s: %w", bucket, err)
	}
	return nil
}

// TenantPrefixes deletes tenants' object prefixes on teardown. It implements
// controlplane.DataRemover.
type TenantPrefixes struct {
	// Client and Bucket locate the shared bucket.
	Client *s3.Client
	Bucket string
}

// RemoveTenantData deletes every object under controlplane.S3Prefix(t.ID), in batches of at most
// 1000. A missing bucket or an empty prefix is success.
func (p TenantPrefixes) RemoveTenantData(ctx context.Context, t *controlplane.Tenant) error {
	return p.removePrefix(ctx, controlplane.S3Prefix(t.ID))
}

// removePrefix deletes every object of the bucket under prefix ("" for all), in batches of at
// most 1000. A missing bucket or an empty prefix is success.
func (p TenantPrefixes) removePrefix(ctx context.Context, prefix string) error {
	pages := s3.NewListObjectsV2Paginator(p.Client, &s3.ListObjectsV2Input{Bucket: aws.String(p.Bucket), Prefix: aws.String(prefix)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			var apiErr smithy.APIError
			if errors.As(err, &apiErr) && apiErr.ErrorCode() == "NoSuchBucket" {
				return nil
			}
			return fmt.Errorf("s3bucket: list %s: %w", prefix, err)
		}
		if len(page.Contents) == 0 {
			continue
		}
		ids := make([]types.ObjectIdentifier, 0, len(page.Contents))
		for _, o := range page.Contents {
			ids = append(ids, types.ObjectIdentifier{Key: o.Key})
		}
		out, err := p.Client.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(p.Bucket), Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)}})
		if err != nil {
			return fmt.Errorf("s3bucket: delete under %s: %w", prefix, err)
		}
		if len(out.Errors) > 0 {
			e := out.Errors[0]
			return fmt.Errorf("s3bucket: delete %s: %s", aws.ToString(e.Key), aws.ToString(e.Message))
		}
	}
	return nil
}
