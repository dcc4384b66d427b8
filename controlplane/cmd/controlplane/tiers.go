package main

import (
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"atende/controlplane/s3bucket"
	"atende/controlplane/supervisor"
	"atende/controlplane/versity"
)

// dedicatedServers returns the dedicated tier's database-server manager: the docker driver
// itself, or nil with the process driver (which refuses dedicated tenants: 422 unsupported).
func dedicatedServers(d cellDriver) supervisor.DatabaseServers {
	if ds, ok := d.(supervisor.DatabaseServers); ok {
		return ds
	}
	return nil
}

// dedicatedBuckets returns the dedicated tier's bucket manager when the driver has the dedicated
// tier: on the embedded gateway buckets with an account of their own per tenant
// (versity.DedicatedAccess), on an external S3 server buckets used with the platform's
// credentials (s3bucket.TenantBuckets). It returns nil otherwise.
func dedicatedBuckets(d cellDriver, embedded *versity.Server, client *s3.Client) supervisor.TenantBuckets {
	if dedicatedServers(d) == nil {
		return nil
	}
	if embedded != nil {
		return embedded.DedicatedAccess()
	}
	return s3bucket.TenantBuckets{Client: client}
}
