package controlplane

import "errors"

// Database tiers of a tenant (Tenant.Tier), chosen at creation and never changed.
const (
	// TierShared: the tenant's database "t_<tenantId>" lives on the platform's shared MongoDB
	// server (with a database user of its own where the server supports users) and its objects
	// under "t/<tenantId>/" in the shared bucket. The default.
	TierShared = "shared"
	// TierDedicated: the tenant gets a stack of its own: a MongoDB server container with its own
	// volume, a bucket, and the network its cell and database server share (docker driver only).
	TierDedicated = "dedicated"
)

// ValidateTier checks that tier is "" (the default, TierShared), TierShared or TierDedicated and
// returns the tier it names; an unknown tier is an invalid *Error.
func ValidateTier(tier string) (string, error) {
	switch tier {
	case "", TierShared:
		return TierShared, nil
	case TierDedicated:
		return TierDedicated, nil
	}
	return "", Errorf(EInvalid, "tier %q is unknown (use %s or %s)", tier, TierShared, TierDedicated)
}

// EUnsupported is the code of a request this deployment cannot serve although it is well formed,
// e.g. a dedicated tenant on a control plane whose cell driver has no dedicated tier (process).
// Nothing is changed. The API answers it with 422.
const EUnsupported = "unsupported"

// Database authentication modes of a shared-tier tenant (Stack.DatabaseAuth).
const (
	// DatabaseAuthUser: the tenant has its own user on the shared server, allowed readWrite on
	// its database only; its cell connects with it.
	DatabaseAuthUser = "user"
	// DatabaseAuthUnsupported: the server has no users (FerretDB v1 answers createUser with
	// CommandNotFound); the cell connects with the platform's URI as it is.
	DatabaseAuthUnsupported = "unsupported"
)

// Stack records what the supervisor created for a tenant besides its cell, one provisioning
// action at a time (Done counts them), so a teardown removes exactly that and a supervisor taking
// over after a crash carries on with the next action. Names derive from the tenant id.
type Stack struct {
	// Done counts the provisioning actions already performed and recorded with an event.
	Done int `json:"provisionDone"`
	// DatabaseAuth (shared tier) is DatabaseAuthUser or DatabaseAuthUnsupported once decided.
	DatabaseAuth string `json:"databaseAuth,omitempty"`
	// DatabaseUser (shared tier, DatabaseAuthUser) is the tenant's user on the shared server,
	// "u_<tenantId>", defined on the database "t_<tenantId>" (its authSource).
	DatabaseUser string `json:"databaseUser,omitempty"`
	// Network (dedicated tier) is the tenant's own network, shared by its cell and its database
	// server, e.g. "atende-t-<tenantId>".
	Network string `json:"network,omitempty"`
	// DatabaseServer and DatabaseVolume (dedicated tier) are the tenant's MongoDB server
	// container and the volume holding its data, e.g. "atende-mongo-<tenantId>".
	DatabaseServer string `json:"databaseServer,omitempty"`
	DatabaseVolume string `json:"databaseVolume,omitempty"`
	// DatabaseURI (dedicated tier) is the server's URI as the cell reaches it on the tenant's
	// network, e.g. "mongodb://atende-mongo-<tenantId>:27017/". It holds no credentials.
	DatabaseURI string `json:"databaseUri,omitempty"`
	// Bucket (dedicated tier) is the tenant's own bucket, e.g. "atende-t-<tenantId>".
	Bucket string `json:"bucket,omitempty"`
}

// DatabaseUserName returns the name of a shared-tier tenant's database user: "u_<tenantId>".
func DatabaseUserName(tenantID string) string { return "u_" + tenantID }

// BucketName returns the name of a dedicated tenant's bucket: "atende-t-<tenantId>" (35
// characters for an id of NewTenantID, within S3's 3 to 63 lowercase letters, digits and '-').
func BucketName(tenantID string) string { return "atende-t-" + tenantID }

// Kinds of dedicated-tier resources, as reported by ResourceListers and in a SweepReport.
const (
	// ResourceVolume is a docker volume labelled atende.managed (a dedicated database's data).
	ResourceVolume = "volume"
	// ResourceBucket is a dedicated tenant's bucket "atende-t-<tenantId>".
	ResourceBucket = "bucket"
)

// ErrDatabaseUsersUnsupported is returned (wrapped) by a database-user manager when the server
// has no users, e.g. FerretDB v1, which answers createUser with CommandNotFound (code 59).
var ErrDatabaseUsersUnsupported = errors.New("the database server does not support users")

// DatabaseServer is what a dedicated tenant's database server consists of.
type DatabaseServer struct {
	// Container and Volume name the server's container and the volume of its data.
	Container, Volume string
	// URI is the server's mongodb:// URI as the tenant's cell reaches it, without credentials.
	URI string
}
