package controlplane

import (
	"context"
	"time"

	"atende/cell"
)

// Store is the tenant registry. Implementations translate their driver's errors into *Error:
// not_found for a missing tenant, conflict for a duplicate key or a stale Version.
type Store interface {
	// CreateTenant inserts t (Version 1) and ev, its registration event. It returns a conflict
	// *Error if a tenant that is not deleted already has t.Key; exactly one of several concurrent
	// creations of the same key succeeds.
	CreateTenant(ctx context.Context, t *Tenant, ev Event) error
	// Tenant returns the tenant with id (deleted tenants included) or a not_found *Error.
	Tenant(ctx context.Context, id string) (*Tenant, error)
	// TenantByKey returns the tenant that is not deleted and has key, or a not_found *Error.
	TenantByKey(ctx context.Context, key string) (*Tenant, error)
	// Tenants returns the tenants matching f, oldest first.
	Tenants(ctx context.Context, f TenantFilter) ([]*Tenant, error)
	// SaveTenant replaces the stored tenant with t if the stored Version still equals t.Version,
	// then increments t.Version; otherwise it returns a conflict *Error and the tenant is not
	// changed. If ev is not nil it is appended to the tenant's events with Seq set to the new
	// Version. Without transactions, implementations write the event first and readers ignore
	// events of saves that did not happen, so a crash between the writes never loses an event of
	// a saved state nor shows one of an unsaved state.
	SaveTenant(ctx context.Context, t *Tenant, ev *Event) error
	// Events returns the events of a tenant in Seq order: one per save with an event, none of a
	// save that did not happen.
	Events(ctx context.Context, tenantID string) ([]Event, error)
}

// TenantFilter selects tenants in Store.Tenants. The zero value selects every tenant that is not
// deleted.
type TenantFilter struct {
	// States, when not empty, selects tenants in one of these states only.
	States []State
	// IncludeDeleted also selects deleted tenants (tombstones) when States is empty.
	IncludeDeleted bool
}

// Driver runs cells. Every method is idempotent: starting a running cell returns its facts,
// stopping a stopped or unknown cell succeeds. The supervisor calls Start, Stop and Remove with
// the fence of the tenant's lease in ctx (WithFence); drivers that record it refuse, with a
// conflict *Error, a call whose fence is lower than the one that last touched the cell.
type Driver interface {
	// Name names the driver, e.g. "process"; it is recorded in Cell.Driver.
	Name() string
	// Start ensures a cell for cfg.TenantID is running with cfg (the driver chooses
	// cfg.ListenAddr when it is empty) and returns what it recorded about it. It returns once
	// the cell was launched, not once it is healthy (see CellStatus and the cell's /healthz).
	Start(ctx context.Context, cfg cell.Config) (Cell, error)
	// Stop stops the tenant's cell (SIGTERM, then SIGKILL after a grace period, or the driver's
	// equivalent) and waits until it is gone.
	Stop(ctx context.Context, tenantID string) error
	// Status reports the cell's current state; a cell the driver does not know is CellAbsent.
	Status(ctx context.Context, tenantID string) (CellStatus, error)
	// Logs returns at most the last lines lines of the cell's combined output.
	Logs(ctx context.Context, tenantID string, lines int) ([]byte, error)
	// Remove deletes what the driver created for the tenant besides its data (log files,
	// containers, networks). The cell must be stopped.
	Remove(ctx context.Context, tenantID string) error
}

// Cell states reported by Driver.Status.
const (
	// CellRunning: the process or container is up (it may not be healthy yet).
	CellRunning = "running"
	// CellRestarting: it exited unexpectedly and the driver is about to start it again.
	CellRestarting = "restarting"
	// CellStopped: it was stopped on purpose.
	CellStopped = "stopped"
	// CellAbsent: the driver knows nothing about the tenant's cell.
	CellAbsent = "absent"
)

// CellStatus is a driver's view of one cell.
type CellStatus struct {
	// TenantID is the cell's tenant; Driver the driver's name.
	TenantID string `json:"tenantId"`
	Driver   string `json:"driver"`
	// State is one of CellRunning, CellRestarting, CellStopped, CellAbsent.
	State string `json:"state"`
	// Address is the current "host:port" of the cell's HTTP server.
	Address string `json:"address,omitempty"`
	// PID or ContainerID identifies the running process or container.
	PID         int    `json:"pid,omitempty"`
	ContainerID string `json:"containerId,omitempty"`
	// Restarts counts unexpected exits followed by a restart since the driver started it.
	Restarts int `json:"restarts"`
	// StartedAt is when the current process or container started (UTC).
	StartedAt *time.Time `json:"startedAt,omitempty"`
	// LastExit describes the last unexpected exit, e.g. "signal: killed".
	LastExit string `json:"lastExit,omitempty"`
	// Fence is the fencing counter (Lease.Fence) of the supervisor step that last started the
	// cell, for drivers that record it; 0 when unknown.
	Fence int64 `json:"fence,omitempty"`
	// Healthy reports whether the cell answered GET /healthz with 200 when asked (set by the
	// control plane, not by drivers).
	Healthy bool `json:"healthy"`
}

// DataRemover removes one kind of a tenant's data (its database, its object prefix) during the
// teardown of a deleted tenant. Removing data that does not exist succeeds.
type DataRemover interface {
	// RemoveTenantData deletes the tenant's data held by this remover.
	RemoveTenantData(ctx context.Context, t *Tenant) error
}

// NewTenant is a request to register a tenant.
type NewTenant struct {
	// Key, Name, AllowedOrigins, Plan and Dedicated become the tenant's fields; an empty Plan is
	// DefaultPlan.
	Key            string
	Name           string
	AllowedOrigins []string
	Plan           string
	Dedicated      bool
	// Tier is TierShared, TierDedicated or "" (TierDedicated when Dedicated is set, TierShared
	// otherwise); a tier contradicting Dedicated is invalid.
	Tier string
	// Admin is the tenant's first tenant-admin (roles "tenant-admin" and "agent").
	Admin NewUser
	// Agents are further users to create with the cell (e.g. the seeded dev agent).
	Agents []NewUser
}

// NewUser is a user the cell creates at first start. An empty Password is generated.
type NewUser struct {
	Email, Name, Password string
	// Roles default to ["tenant-admin","agent"] for the admin and ["agent"] for agents.
	Roles []string
}

// Credentials are a user's email and clear-text password, returned once at creation.
type Credentials struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

// CreatedTenant is the answer to a tenant registration: the tenant (state creation-requested)
// and the clear-text credentials of its admin and agents, which are not stored anywhere.
type CreatedTenant struct {
	Tenant *Tenant
	Admin  Credentials
	Agents []Credentials
}

// TenantService is what the super-admin API calls. Methods taking idOrKey accept a tenant id, the
// key of a tenant that is not deleted or, when no such tenant exists, the key of the most
// recently deleted tenant that had it.
type TenantService interface {
	// CreateTenant validates and registers a tenant and wakes the supervisor. Errors: invalid,
	// conflict (the key is taken).
	CreateTenant(ctx context.Context, req NewTenant) (*CreatedTenant, error)
	// Tenants lists tenants matching f.
	Tenants(ctx context.Context, f TenantFilter) ([]*Tenant, error)
	// Tenant returns one tenant or a not_found *Error.
	Tenant(ctx context.Context, idOrKey string) (*Tenant, error)
	// SuspendTenant records the intent to suspend (idempotent). Errors: not_found, conflict
	// (the current state cannot be suspended).
	SuspendTenant(ctx context.Context, idOrKey string) (*Tenant, error)
	// ResumeTenant records the intent to resume a suspended tenant or to cancel a pending
	// deletion (idempotent on a live tenant). Errors: not_found, conflict.
	ResumeTenant(ctx context.Context, idOrKey string) (*Tenant, error)
	// DeleteTenant moves the tenant to deletion-pending; it is torn down after the grace period,
	// or at once when now is true. Errors: not_found, conflict.
	DeleteTenant(ctx context.Context, idOrKey string, now bool) (*Tenant, error)
	// CancelDeletion returns a deletion-pending tenant to the state it had before its deletion
	// was requested (see RestoreState). Errors: not_found, conflict (the tenant is not
	// deletion-pending: its teardown has begun, or it was never deleted).
	CancelDeletion(ctx context.Context, idOrKey string) (*Tenant, error)
	// RotateKeys gives the tenant's cell a new signing key (new kid), keeps the old one as a
	// verification key until its tokens have expired, and records the change with an event; the
	// supervisor then restarts a live tenant's cell with the new keys (the tenant stays live and
	// routed). Errors: not_found, conflict (the tenant is neither live nor suspended).
	RotateKeys(ctx context.Context, idOrKey string) (*Tenant, error)
	// TenantEvents returns the tenant's lifecycle events in order.
	TenantEvents(ctx context.Context, idOrKey string) ([]Event, error)
	// CellStatus returns the driver's view of the tenant's cell, with Healthy probed.
	CellStatus(ctx context.Context, idOrKey string) (CellStatus, error)
	// CellLogs returns at most the last lines lines of the cell's output.
	CellLogs(ctx context.Context, idOrKey string, lines int) ([]byte, error)
}

// Transition moves t to state to in memory: it checks the transition table, sets State,
// StateReason and UpdatedAt (now, UTC) and returns the event to save with Store.SaveTenant.
// It returns a conflict *Error if the move is illegal.
func (t *Tenant) Transition(to State, reason string, now time.Time) (*Event, error) {
	if err := CheckTransition(t.State, to); err != nil {
		return nil, err
	}
	ev := &Event{TenantID: t.ID, From: t.State, To: to, At: now.UTC(), Reason: reason}
	t.State, t.StateReason, t.UpdatedAt = to, reason, now.UTC()
	return ev, nil
}
