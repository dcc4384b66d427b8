// Package s3blob keeps a tenant's attachments in S3 (aws-sdk-go-v2) under the tenant's prefix
// and hands browsers presigned URLs (SigV4 query signing) so file bytes never pass through the
// cell.
package s3blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
	"time"

	"atende/cell"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// Config locates the tenant's objects. Endpoint is used for the cell's own calls;
// PublicEndpoint is written into presigned URLs (browsers must reach it).
type Config struct {
	Endpoint, PublicEndpoint string
	Region, Bucket, Prefix   string
	AccessKey, SecretKey     string
}

// Blob stores and presigns the objects of one tenant.
type Blob struct {
	client  *s3.Client
	presign *s3.PresignClient
	bucket  string
	prefix  string
}

// New returns the Blob for cfg. Prefix must end with "/" (e.g. "t/<tenantId>/").
func New(cfg Config) (*Blob, error) {
	if !strings.HasSuffix(cfg.Prefix, "/") || cfg.Bucket == "" {
		return nil, errors.New("s3blob: bucket and a prefix ending in / are required")
	}
	mk := func(endpoint string) *s3.Client {
		return s3.New(s3.Options{
			Region: cfg.Region, BaseEndpoint: aws.String(endpoint), UsePathStyle: true,
			Credentials: credentials.NewStaticCredentialsProvider(cfg.AccessKey, cfg.SecretKey, ""),
		})
	}
	return &Blob{client: mk(cfg.Endpoint), presign: s3.NewPresignClient(mk(cfg.PublicEndpoint)), bucket: cfg.Bucket, prefix: cfg.Prefix}, nil
}

// ChatKey returns a fresh server-generated object key for a file of chatID:
// "<prefix>c/<chatId>/<random>". Client input never becomes part of a key.
func (b *Blob) ChatKey(chatID, random string) string {
	return b.prefix + "c/" + chatID + "/" + random
}

// owns reports whether key lies under the tenant's prefix.
func (b *Blob) owns(key string) bool {
	return strings.HasPrefix(key, b.prefix) && !strings.Contains(key, "..")
}

// PresignPut returns a URL valid for ttl that accepts one PUT of exactly size bytes with the given
// content type (both signed) at key, only while nothing is stored there (If-None-Match: *), and
// stores tenantId as object metadata, together with the
// headers the uploader must send verbatim (Host and Content-Length excepted, which HTTP clients
// set themselves).
func (b *Blob) PresignPut(ctx context.Context, key, contentType string, size int64, tenantID string, ttl time.Duration) (string, map[string]string, error) {
	if !b.owns(key) {
		return "", nil, cell.Errorf(cell.EForbidden, "key outside the tenant prefix")
	}
	req, err := b.presign.PresignPutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(b.bucket), Key: aws.String(key), ContentType: aws.String(contentType),
		ContentLength: aws.Int64(size), Metadata: map[string]string{"tenantid": tenantID},
		// If-None-Match: * makes the PUT conditional (RFC 9110 §13.1.2): once the file is there,
		// the same URL cannot overwrite it before it expires.
		IfNoneMatch: aws.String("*"),
	}, s3.WithPresignExpires(ttl))
	if err != nil {
		return "", nil, fmt.Errorf("s3blob: presign put: %w", err)
	}
	headers := map[string]string{}
	for name, vals := range req.SignedHeader {
		if n := strings.ToLower(name); n != "host" && n != "content-length" && len(vals) > 0 {
			headers[name] = vals[0]
		}
	}
	return req.URL, headers, nil
}

// PresignGet returns a URL valid for ttl that downloads key as an attachment named filename
// (Content-Disposition: attachment) with the stored content type.
func (b *Blob) PresignGet(ctx context.Context, key, filename, contentType string, ttl time.Duration) (string, error) {
	if !b.owns(key) {
		return "", cell.Errorf(cell.EForbidden, "key outside the tenant prefix")
	}
	req, err := b.presign.PresignGetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(b.bucket), Key: aws.String(key),
		ResponseContentDisposition: aws.String(mime.FormatMediaType("attachment", map[string]string{"filename": filename})),
		ResponseContentType:        aws.String(contentType),
	}, s3.WithPresignExpires(ttl))
	if err != nil {
		return "", fmt.Errorf("s3blob: presign get: %w", err)
	}
	return req.URL, nil
}

// Head returns the first n bytes of key (fewer if the object is shorter), or not_found.
func (b *Blob) Head(ctx context.Context, key string, n int) ([]byte, error) {
	if !b.owns(key) {
		return nil, cell.Errorf(cell.EForbidden, "key outside the tenant prefix")
	}
	out, err := b.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key), Range: aws.String(fmt.Sprintf("bytes=0-%d", n-1))})
	if err != nil {
		var apiErr smithy.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode() == "NotFound" || apiErr.ErrorCode() == "NoSuchKey") {
			return nil, cell.Errorf(cell.ENotFound, "the file was not uploaded")
		}
		return nil, fmt.Errorf("s3blob: get: %w", err)
	}
	defer out.Body.Close()
	return io.ReadAll(io.LimitReader(out.Body, int64(n)))
}

// Size returns the stored size of key in bytes, or not_found if nothing was uploaded there.
func (b *Blob) Size(ctx context.Context, key string) (int64, error) {
	if !b.owns(key) {
		return 0, cell.Errorf(cell.EForbidden, "key outside the tenant prefix")
	}
	out, err := b.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
	if err != nil {
		var apiErr smithy.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode() == "NotFound" || apiErr.ErrorCode() == "NoSuchKey") {
			return 0, cell.Errorf(cell.ENotFound, "the file was not uploaded")
		}
		return 0, fmt.Errorf("s3blob: head: %w", err)
	}
	return aws.ToInt64(out.ContentLength), nil
}
