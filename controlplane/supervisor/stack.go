package supervisor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"time"

	"atende/cell"
	"atende/controlplane"
)

// DatabaseUsers gives every shared-tier tenant a user of its own on the shared MongoDB server,
// allowed readWrite on the tenant's database only, and drops it on teardown. mongodb.TenantUsers
// implements it. Servers without users (FerretDB v1) answer controlplane.ErrDatabaseUsersUnsupported:
// the supervisor records that (Stack.DatabaseAuth) and the cell keeps the platform's URI.
type DatabaseUsers interface {
	// EnsureTenantUser creates user on database db with the role readWrite on db and password,
	// or, if the user exists, sets its password and roles to these. Errors: one wrapping
	// controlplane.ErrDatabaseUsersUnsupported when the server has no users, the server's others.
	EnsureTenantUser(ctx context.Context, db, user, password string) error
	// DropTenantUser drops user from database db; a missing user, or a server without users,
	// is success.
	DropTenantUser(ctx context.Context, db, user string) error
}

// DatabaseServers runs the MongoDB servers of dedicated tenants, each on the tenant's own
// network (docker.Driver implements it). Every method is idempotent: what exists is success for
// an Ensure, what is missing is success for a Remove.
type DatabaseServers interface {
	// EnsureTenantNetwork creates the tenant's network (the one its cell joins) and returns its
	// name.
	EnsureTenantNetwork(ctx context.Context, tenantID string) (string, error)
	// EnsureDatabaseServer creates and starts the tenant's database server (a container with a
	// volume for its data) on that network, waits until it answers, and returns what it created.
	EnsureDatabaseServer(ctx context.Context, tenantID string) (controlplane.DatabaseServer, error)
	// RemoveDatabaseServer removes the tenant's database server and its volume (the data).
	RemoveDatabaseServer(ctx context.Context, tenantID string) error
}

// TenantBuckets gives dedicated tenants a bucket of their own (controlplane.BucketName) with
// credentials valid on it only (versity.DedicatedAccess on the embedded gateway). Every method is
// idempotent.
type TenantBuckets interface {
	// EnsureTenantBucket creates the tenant's bucket unless it exists and returns its name.
	EnsureTenantBucket(ctx context.Context, tenantID string) (string, error)
	// GrantTenantBucket ensures the tenant's credentials on its bucket and returns them; empty
	// credentials mean the cell gets the platform's (an object store without per-tenant
	// accounts).
	GrantTenantBucket(ctx context.Context, tenantID string) (accessKey, secretKey string, err error)
	// RevokeTenantBucket deletes the tenant's credentials.
	RevokeTenantBucket(ctx context.Context, tenantID string) error
	// RemoveTenantBucket deletes every object of the tenant's bucket, then the bucket.
	RemoveTenantBucket(ctx context.Context, tenantID string) error
}

// Provisioning and teardown action names of the tiers (ProvisionAction.Name, TeardownAction.Name).
const (
	// StackDatabaseUser creates (provisioning) or drops (teardown) a shared-tier tenant's user.
	StackDatabaseUser = "database-user"
	// StackNetwork creates a dedicated tenant's network (removed with the cell, TeardownCellRemove).
	StackNetwork = "network"
	// StackDatabaseServer creates or removes a dedicated tenant's database server and volume.
	StackDatabaseServer = "database-server"
	// StackBucket creates or removes (objects first) a dedicated tenant's bucket.
	StackBucket = "bucket"
	// CheckpointProvisionPrefix, followed by an action name, is the point after a provisioning
	// action and before it is recorded.
	CheckpointProvisionPrefix = "provision:"
)

// ProvisionAction is one action that builds a tenant's stack before its cell first starts (state
// creating). Each is idempotent and records what it created in t.Stack; the supervisor saves it
// with an event (creating → creating) and counts it in Stack.Done.
type ProvisionAction struct {
	// Name identifies the action (Stack* constants).
	Name string
	// Run performs it and returns what was done, for the event.
	Run func(ctx context.Context, t *controlplane.Tenant) (string, error)
}

// DedicatedSupported reports whether this supervisor can give a tenant the dedicated tier: its
// options have both DatabaseServers and TenantBuckets.
func (s *Supervisor) DedicatedSupported() bool {
	return s.opts.DatabaseServers != nil && s.opts.TenantBuckets != nil
}

// tierOf validates the tier of req (controlplane.ValidateTier, Dedicated) and refuses, with
// controlplane.EUnsupported, a dedicated tenant this supervisor cannot provision.
func (s *Supervisor) tierOf(req controlplane.NewTenant) (string, error) {
	tier, err := controlplane.ValidateTier(req.Tier)
	if err != nil {
		return "", err
	}
	if req.Dedicated {
		if req.Tier == controlplane.TierShared {
			return "", controlplane.Errorf(controlplane.EInvalid, "tier %q contradicts dedicated: true", req.Tier)
		}
		tier = controlplane.TierDedicated
	}
	if tier == controlplane.TierDedicated && !s.DedicatedSupported() {
		return "", controlplane.Errorf(controlplane.EUnsupported,
			"the dedicated tier needs the docker cell driver (ATENDE_DRIVER=docker); this control plane runs the %s driver", s.driver.Name())
	}
	return tier, nil
}

// ProvisionActions returns the actions that build t's stack, in order: for the dedicated tier
// its network, its database server (container and volume) and its bucket; for the shared tier its
// database user, when a DatabaseUsers is configured. The list depends only on the tier, which
// never changes, so Stack.Done keeps indexing it.
func (s *Supervisor) ProvisionActions(t *controlplane.Tenant) []ProvisionAction {
	if t.Dedicated {
		return []ProvisionAction{
			{StackNetwork, func(ctx context.Context, t *controlplane.Tenant) (string, error) {
				name, err := s.opts.DatabaseServers.EnsureTenantNetwork(ctx, t.ID)
				if err != nil {
					return "", err
				}
				t.Stack.Network = name
				return "network " + name + " created", nil
			}},
			{StackDatabaseServer, func(ctx context.Context, t *controlplane.Tenant) (string, error) {
				srv, err := s.opts.DatabaseServers.EnsureDatabaseServer(ctx, t.ID)
				if err != nil {
					return "", err
				}
				t.Stack.DatabaseServer, t.Stack.DatabaseVolume, t.Stack.DatabaseURI = srv.Container, srv.Volume, srv.URI
				return fmt.Sprintf("database server %s (volume %s) answering at %s", srv.Container, srv.Volume, srv.URI), nil
			}},
			{StackBucket, func(ctx context.Context, t *controlplane.Tenant) (string, error) {
				bucket, err := s.opts.TenantBuckets.EnsureTenantBucket(ctx, t.ID)
				if err != nil {
					return "", err
				}
				t.Stack.Bucket = bucket
				return "bucket " + bucket + " created", nil
			}},
		}
	}
	if s.opts.DatabaseUsers == nil {
		return nil
	}
	return []ProvisionAction{{StackDatabaseUser, func(ctx context.Context, t *controlplane.Tenant) (string, error) {
		db, user := controlplane.DatabaseName(t.ID), controlplane.DatabaseUserName(t.ID)
		if t.Secrets.DatabasePassword == "" {
			t.Secrets.DatabasePassword = newDatabasePassword()
		}
		err := s.opts.DatabaseUsers.EnsureTenantUser(ctx, db, user, t.Secrets.DatabasePassword)
		if errors.Is(err, controlplane.ErrDatabaseUsersUnsupported) {
			t.Stack.DatabaseAuth, t.Stack.DatabaseUser, t.Secrets.DatabasePassword = controlplane.DatabaseAuthUnsupported, "", ""
			return "database users unsupported by the server; the cell uses the platform's connection", nil
		}
		if err != nil {
			return "", err
		}
		t.Stack.DatabaseAuth, t.Stack.DatabaseUser = controlplane.DatabaseAuthUser, user
		return fmt.Sprintf("database user %s created with readWrite on %s only", user, db), nil
	}}}
}

// newDatabasePassword returns 32 random bytes (crypto/rand) in hex.
func newDatabasePassword() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails on supported platforms
	return hex.EncodeToString(b)
}

// provisionNext performs the next provisioning action of a creating tenant and records it with
// an event (creating → creating) and Stack.Done, and reports whether every action was already
// done (the step may go on to start the cell). A failing action moves the tenant to
// creation-failed with the reason; when a super-admin retries the creation, provisioning resumes
// at that action.
func (s *Supervisor) provisionNext(ctx context.Context, t *controlplane.Tenant) (bool, error) {
	actions := s.ProvisionActions(t)
	if t.Stack.Done >= len(actions) {
		return true, nil
	}
	a := actions[t.Stack.Done]
	done, err := a.Run(ctx, t)
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		reason := fmt.Sprintf("provision %d/%d (%s) failed: %v", t.Stack.Done+1, len(actions), a.Name, err)
		return false, errors.Join(err, s.transition(ctx, t, controlplane.StateCreationFailed, reason))
	}
	if err := s.checkpoint(ctx, t, CheckpointProvisionPrefix+a.Name); err != nil {
		return false, err
	}
	t.Stack.Done++
	t.UpdatedAt = time.Now().UTC()
	reason := fmt.Sprintf("provision %d/%d: %s", t.Stack.Done, len(actions), done)
	if err := s.save(ctx, t, &controlplane.Event{TenantID: t.ID, From: t.State, To: t.State, At: t.UpdatedAt, Reason: reason}); err != nil {
		return false, err
	}
	s.log.Info("tenant provisioning", attrTenantID, t.ID, attrKey, t.Key, "action", a.Name, "done", t.Stack.Done, "of", len(actions))
	return false, nil
}

// tierCellConfig adapts cfg (the platform's cell configuration of t) to t's tier: a dedicated
// tenant's cell uses its own database server and bucket, with credentials valid on that bucket
// only; a shared-tier tenant with a database user of its own connects with it.
func (s *Supervisor) tierCellConfig(ctx context.Context, t *controlplane.Tenant, cfg cell.Config) (cell.Config, error) {
	if t.Dedicated {
		if t.Stack.DatabaseURI == "" || t.Stack.Bucket == "" {
			return cfg, fmt.Errorf("dedicated stack of %s is not provisioned (%d actions done)", t.ID, t.Stack.Done)
		}
		cfg.MongoURI, cfg.S3Bucket = t.Stack.DatabaseURI, t.Stack.Bucket
		access, secret, err := s.opts.TenantBuckets.GrantTenantBucket(ctx, t.ID)
		if err != nil {
			return cfg, fmt.Errorf("grant bucket credentials: %w", err)
		}
		if access != "" {
			cfg.S3AccessKey, cfg.S3SecretKey = access, secret
		}
		return cfg, nil
	}
	if t.Stack.DatabaseAuth == controlplane.DatabaseAuthUser && t.Stack.DatabaseUser != "" {
		uri, err := WithDatabaseUser(cfg.MongoURI, t.Stack.DatabaseUser, t.Secrets.DatabasePassword, cfg.Database)
		if err != nil {
			return cfg, err
		}
		cfg.MongoURI = uri
	}
	return cfg, nil
}

// WithDatabaseUser returns the MongoDB connection string uri with user and password as its
// credentials (replacing any) and authSource set to db, where the user is defined. It returns an
// error for a URI it cannot parse.
func WithDatabaseUser(uri, user, password, db string) (string, error) {
	u, err := url.Parse(uri)
	if err != nil || (u.Scheme != "mongodb" && u.Scheme != "mongodb+srv") {
		return "", fmt.Errorf("database URI is not a mongodb:// URI")
	}
	u.User = url.UserPassword(user, password)
	q := u.Query()
	q.Set("authSource", db)
	u.RawQuery = q.Encode()
	if u.Path == "" {
		u.Path = "/"
	}
	return u.String(), nil
}

// stackTeardown returns the teardown actions of t's tier, keyed by the standard action they
// follow: the dedicated database server after the cell stop (before the cell removal takes the
// network), the dedicated bucket after the data removers, the shared tier's database user after
// the cell removal.
func (s *Supervisor) stackTeardown(t *controlplane.Tenant) map[string][]TeardownAction {
	out := map[string][]TeardownAction{}
	if t.Dedicated {
		if s.opts.DatabaseServers != nil {
			out[TeardownCellStop] = append(out[TeardownCellStop], TeardownAction{StackDatabaseServer, "dedicated database server and its volume removed",
				func(ctx context.Context, t *controlplane.Tenant) error {
					return s.opts.DatabaseServers.RemoveDatabaseServer(ctx, t.ID)
				}})
		}
		if s.opts.TenantBuckets != nil {
			out[teardownData] = append(out[teardownData], TeardownAction{StackBucket, "dedicated bucket " + controlplane.BucketName(t.ID) + " emptied and removed",
				func(ctx context.Context, t *controlplane.Tenant) error {
					return s.opts.TenantBuckets.RemoveTenantBucket(ctx, t.ID)
				}})
		}
		return out
	}
	if s.opts.DatabaseUsers != nil {
		out[TeardownCellRemove] = append(out[TeardownCellRemove], TeardownAction{StackDatabaseUser, "database user " + controlplane.DatabaseUserName(t.ID) + " dropped",
			func(ctx context.Context, t *controlplane.Tenant) error {
				return s.opts.DatabaseUsers.DropTenantUser(ctx, controlplane.DatabaseName(t.ID), controlplane.DatabaseUserName(t.ID))
			}})
	}
	return out
}

// teardownData keys the stack teardown actions that follow the data removers (stackTeardown).
const teardownData = "data"
