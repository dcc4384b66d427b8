// Package supervisor is the control plane's reconciler and tenant service. The service side
// (TenantService methods) validates requests, records intent in the registry and wakes the
// reconciler; the reconciler performs one idempotent step per tenant per pass, saves the next
// state with an event, and publishes the route table whenever the set of routable tenants changes.
//
// Several supervisors may share one registry (control planes in failover, or a new one started
// while an old one hangs): each step runs under the tenant's lease (lease.go), taken before the
// step and released after it, renewed while it lasts, and expiring if its holder dies, so no two
// supervisors ever step one tenant at once and a crashed one never leaves a tenant stuck. The
// lease's fence goes to the driver with every call of the step.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"atende/controlplane"
	"atende/traefik"
)

// Log attribute keys.
const (
	attrTenantID = "tenantId"
	attrKey      = "key"
	attrFrom     = "from"
	attrTo       = "to"
	attrErr      = "err"
)

// Options configure a Supervisor.
type Options struct {
	// Store is the tenant registry and Driver runs cells. Required.
	Store  controlplane.Store
	Driver controlplane.Driver
	// Platform is the deployment-wide cell configuration.
	Platform Platform
	// DataRemovers delete a deleted tenant's data (database, object prefix), in order.
	DataRemovers []controlplane.DataRemover
	// ObjectStoreIAM, when set, gives each cell its tenant's own object-store credentials
	// instead of Platform.S3AccessKey and S3SecretKey, and revokes them on suspension and
	// deletion (see ObjectStoreIAM).
	ObjectStoreIAM ObjectStoreIAM
	// DatabaseUsers, when set, gives every shared-tier tenant a database user of its own (see
	// DatabaseUsers); a server without users is recorded and the cell keeps the platform's URI.
	DatabaseUsers DatabaseUsers
	// DatabaseServers and TenantBuckets provision the dedicated tier (a database server, a
	// network and a bucket per tenant). Without both, a dedicated tenant is refused with
	// controlplane.EUnsupported.
	DatabaseServers DatabaseServers
	TenantBuckets   TenantBuckets
	// OnRoutes receives the whole route table after every change of it (and once at the first
	// pass); an error is logged and the table is offered again at the next pass.
	OnRoutes func([]traefik.Route) error
	// Tick is the interval of passes without a wake-up; default 1 s.
	Tick time.Duration
	// HealthTimeout bounds the wait for a new cell's GET /healthz 200 (default 20 s), polled every
	// HealthInterval (default 25 ms).
	HealthTimeout, HealthInterval time.Duration
	// DeleteGrace is how long a tenant stays in deletion-pending before teardown (0: none).
	DeleteGrace time.Duration
	// RetryFailedDeletionAfter is how long a deletion-failed tenant waits before the next
	// attempt; default 30 s.
	RetryFailedDeletionAfter time.Duration
	// Workers bounds how many tenant steps run at once; default 8.
	Workers int
	// Leases keeps the tenants' leases; default Store, if it implements controlplane.LeaseStore
	// (mongodb.Store does). Required one way or the other.
	Leases controlplane.LeaseStore
	// LeaseTTL is the lifetime of a step's lease (default DefaultLeaseTTL): the longest a crashed
	// supervisor keeps another from stepping its tenants. A lease is renewed every third of it
	// while its step runs, and the step is cancelled if a renewal is refused, or a quarter of it
	// before the lease would lapse (that quarter absorbs writes in flight and clock skew).
	LeaseTTL time.Duration
	// Owner names this supervisor in the leases it holds; default "<hostname>-<pid>-<random>".
	Owner string
	// Resources are further listers of tenant resources for Sweep, besides Driver, DataRemovers
	// and ObjectStoreIAM, which take part when they implement controlplane.ResourceLister.
	Resources []controlplane.ResourceLister
	// Checkpoint, when set, is called at each named point of a step (see CheckpointStepBegin and
	// the other Checkpoint* constants), with the step's context. An error it returns is a crash
	// at that point: the supervisor does nothing more at all (no further write, no lease release,
	// no pass), as if its process had died, and Run returns ErrCrashed. Tests inject crashes and
	// delays with it.
	Checkpoint func(ctx context.Context, tenantID, point string) error
	// Logger receives the supervisor's events; default slog.Default().
	Logger *slog.Logger
}

// Supervisor reconciles tenants towards their recorded intent and serves TenantService.
type Supervisor struct {
	opts   Options
	store  controlplane.Store
	driver controlplane.Driver
	log    *slog.Logger
	health *http.Client
	wake   chan struct{}
	slots  chan struct{}

	mu   sync.Mutex
	busy map[string]bool // tenants with a step in flight
	// heldUntil: tenants whose lease another supervisor held at the last try, and until when
	// this one leaves them alone (see leasedStep).
	heldUntil map[string]time.Time

	routesMu  sync.Mutex
	published []traefik.Route
	hasRoutes bool
	// routesListed is when the tenants behind the last route table were listed.
	routesListed time.Time
	// overrides replace registry tenants in route tables (see setRouteOverride).
	overrides map[string]*controlplane.Tenant

	leases  controlplane.LeaseStore
	owner   string
	crashed atomic.Bool // a Checkpoint crashed the supervisor: it does nothing more

	iamSynced bool // ObjectStoreIAM synced (only read and written by Run's passes)
}

var _ controlplane.TenantService = (*Supervisor)(nil)

// New validates opts, applies defaults and returns a supervisor. Run starts reconciling.
func New(opts Options) (*Supervisor, error) {
	if opts.Store == nil || opts.Driver == nil {
		return nil, errors.New("supervisor: Store and Driver are required")
	}
	if opts.Platform.Domain == "" {
		return nil, errors.New("supervisor: Platform.Domain is required")
	}
	if opts.Tick <= 0 {
		opts.Tick = time.Second
	}
	if opts.HealthTimeout <= 0 {
		opts.HealthTimeout = 20 * time.Second
	}
	if opts.HealthInterval <= 0 {
		opts.HealthInterval = 25 * time.Millisecond
	}
	if opts.RetryFailedDeletionAfter <= 0 {
		opts.RetryFailedDeletionAfter = 30 * time.Second
	}
	if opts.Workers <= 0 {
		opts.Workers = 8
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Leases == nil {
		ls, ok := opts.Store.(controlplane.LeaseStore)
		if !ok {
			return nil, errors.New("supervisor: Leases is required (the Store does not keep leases)")
		}
		opts.Leases = ls
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = DefaultLeaseTTL
	}
	if opts.Owner == "" {
		opts.Owner = defaultOwner()
	}
	return &Supervisor{
		opts: opts, store: opts.Store, driver: opts.Driver, log: opts.Logger, leases: opts.Leases, owner: opts.Owner,
		health: &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
		wake:   make(chan struct{}, 1), slots: make(chan struct{}, opts.Workers), busy: map[string]bool{}, heldUntil: map[string]time.Time{},
		overrides: map[string]*controlplane.Tenant{},
	}, nil
}

// Poke wakes the reconciler for an immediate pass. It never blocks.
func (s *Supervisor) Poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// CellAddressChanged is the hook for drivers that move a cell (process.Options.OnAddressChange):
// it triggers a pass, which records the new address and republishes the routes.
func (s *Supervisor) CellAddressChanged(tenantID, addr string) {
	s.log.Info("cell address changed", attrTenantID, tenantID, "addr", addr)
	s.Poke()
}

// Run reconciles until ctx is done: a pass at start, after every Poke and every Tick. It waits
// for the steps in flight before returning ctx.Err(), or ErrCrashed after a Checkpoint crash.
func (s *Supervisor) Run(ctx context.Context) error {
	ticker := time.NewTicker(s.opts.Tick)
	defer ticker.Stop()
	var steps sync.WaitGroup
	defer steps.Wait()
	for {
		if s.crashed.Load() {
			return ErrCrashed
		}
		s.pass(ctx, &steps)
		select {
		case <-ctx.Done():
			steps.Wait()
			if s.crashed.Load() {
				return ErrCrashed
			}
			return ctx.Err()
		case <-s.wake:
		case <-ticker.C:
		}
	}
}

// pass starts a step for every tenant that needs one and has none in flight, then publishes the
// route table if it changed.
func (s *Supervisor) pass(ctx context.Context, steps *sync.WaitGroup) {
	if s.crashed.Load() {
		return
	}
	listed := time.Now()
	tenants, err := s.store.Tenants(ctx, controlplane.TenantFilter{})
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("list tenants", attrErr, err.Error())
		}
		return
	}
	stepping := tenants
	if !s.objectStoreSynced(ctx, tenants) {
		stepping = nil
	}
	for _, t := range stepping {
		step := s.stepFor(ctx, t)
		if step == nil {
			continue
		}
		s.mu.Lock()
		if s.busy[t.ID] || time.Now().Before(s.heldUntil[t.ID]) {
			s.mu.Unlock()
			continue
		}
		delete(s.heldUntil, t.ID)
		s.busy[t.ID] = true
		s.mu.Unlock()
		steps.Add(1)
		go func() {
			defer steps.Done()
			select {
			case s.slots <- struct{}{}:
			case <-ctx.Done():
				s.release(t.ID)
				return
			}
			err := s.leasedStep(ctx, t.ID)
			<-s.slots
			s.release(t.ID)
			if err != nil && ctx.Err() == nil && !s.crashed.Load() {
				level := slog.LevelError
				if controlplane.ErrorCode(err) == controlplane.EConflict {
					level = slog.LevelDebug // the tenant changed meanwhile, or another supervisor holds its lease
				}
				s.log.Log(ctx, level, "tenant step", attrTenantID, t.ID, attrKey, t.Key, "state", string(t.State), attrErr, err.Error())
			}
			s.Poke()
		}()
	}
	if s.crashed.Load() {
		return
	}
	if err := s.publishRoutes(ctx, tenants, listed); err != nil && ctx.Err() == nil {
		s.log.Error("publish routes", attrErr, err.Error())
	}
}

func (s *Supervisor) release(id string) {
	s.mu.Lock()
	delete(s.busy, id)
	s.mu.Unlock()
}

// stepFunc performs one idempotent step for a tenant.
type stepFunc func(ctx context.Context, t *controlplane.Tenant) error

// stepFor returns the step t needs now, or nil.
func (s *Supervisor) stepFor(ctx context.Context, t *controlplane.Tenant) stepFunc {
	switch t.State {
	case controlplane.StateCreationRequested:
		return s.beginCreation
	case controlplane.StateCreating:
		return s.finishCreation
	case controlplane.StateLive:
		if t.Cell.Generation != t.Generation {
			return s.restartCell
		}
		st, err := s.driver.Status(ctx, t.ID)
		if err != nil || st.State == controlplane.CellAbsent || st.State == controlplane.CellStopped ||
			(st.State == controlplane.CellRunning && (st.Address != t.Cell.Address || st.PID != t.Cell.PID)) {
			return s.keepLive
		}
	case controlplane.StateSuspendRequested:
		return s.suspend
	case controlplane.StateResumeRequested:
		return s.resume
	case controlplane.StateDeletionPending:
		// Nothing to do while the grace period runs once the cell is stopped.
		st, err := s.driver.Status(ctx, t.ID)
		if err != nil || (st.State != controlplane.CellAbsent && st.State != controlplane.CellStopped) ||
			t.DeleteAt == nil || !time.Now().Before(*t.DeleteAt) {
			return s.awaitDeletion
		}
	case controlplane.StateDeleting:
		return s.teardown
	case controlplane.StateDeletionFailed:
		if time.Since(t.UpdatedAt) >= s.opts.RetryFailedDeletionAfter {
			return func(ctx context.Context, t *controlplane.Tenant) error {
				return s.transition(ctx, t, controlplane.StateDeleting, "retrying teardown")
			}
		}
	}
	return nil
}

// transition saves t in state to with reason and an event.
func (s *Supervisor) transition(ctx context.Context, t *controlplane.Tenant, to controlplane.State, reason string) error {
	from := t.State
	ev, err := t.Transition(to, reason, time.Now())
	if err != nil {
		return err
	}
	if err := s.save(ctx, t, ev); err != nil {
		return err
	}
	s.log.Info("tenant state", attrTenantID, t.ID, attrKey, t.Key, attrFrom, string(from), attrTo, string(to), "reason", reason)
	return nil
}

// beginCreation: creation-requested → creating.
func (s *Supervisor) beginCreation(ctx context.Context, t *controlplane.Tenant) error {
	return s.transition(ctx, t, controlplane.StateCreating, "starting cell")
}

// finishCreation: creating → creating while the tenant's stack is provisioned, one action per
// step (see ProvisionActions), then creating → live once the cell answers /healthz, or
// creation-failed.
func (s *Supervisor) finishCreation(ctx context.Context, t *controlplane.Tenant) error {
	if done, err := s.provisionNext(ctx, t); err != nil || !done {
		return err
	}
	return s.bringUp(ctx, t, controlplane.StateCreationFailed)
}

// resume: resume-requested → live once the cell answers /healthz, or resume-failed.
func (s *Supervisor) resume(ctx context.Context, t *controlplane.Tenant) error {
	return s.bringUp(ctx, t, controlplane.StateResumeFailed)
}

// bringUp starts t's cell, waits until it is healthy, publishes its route and then saves it
// live, so a tenant that reads live in the registry is already routable. On failure the cell is
// stopped and t moves to failed with the reason.
func (s *Supervisor) bringUp(ctx context.Context, t *controlplane.Tenant, failed controlplane.State) error {
	started := time.Now()
	cfg, err := s.cellConfig(ctx, t)
	if err != nil {
		return err // the object store refused the grant: try again at the next pass
	}
	if err := s.checkpoint(ctx, t, CheckpointGranted); err != nil {
		return err
	}
	c, err := s.driver.Start(ctx, cfg)
	if err == nil {
		if err := s.checkpoint(ctx, t, CheckpointCellStarted); err != nil {
			return err
		}
		c, err = s.waitHealthy(ctx, t.ID, c)
	}
	if ctx.Err() != nil {
		return ctx.Err() // shutting down or lease lost: leave the state for the next holder to retry
	}
	if controlplane.ErrorCode(err) == controlplane.EConflict {
		return err // a newer lease holder owns the cell (fence): it decides
	}
	if err != nil {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		_ = s.driver.Stop(stopCtx, t.ID)
		revokeErr := s.revokeObjectStore(stopCtx, t)
		cancel()
		return errors.Join(err, revokeErr, s.transition(ctx, t, failed, err.Error()))
	}
	c.Generation = t.Generation
	t.Cell = c
	if err := s.checkpoint(ctx, t, CheckpointCellHealthy); err != nil {
		return err
	}
	live := *t
	live.State, live.Version = controlplane.StateLive, 0
	s.setRouteOverride(&live) // every table published until the registry says live routes it live
	if err := s.publishRoutes(ctx, nil, time.Time{}); err != nil {
		s.log.Error("publish routes", attrErr, err.Error())
	}
	if err := s.checkpoint(ctx, t, CheckpointRouted); err != nil {
		return err
	}
	if err := s.transition(ctx, t, controlplane.StateLive, fmt.Sprintf("cell healthy after %dms", time.Since(started).Milliseconds())); err != nil {
		s.clearRouteOverride(t.ID)
		return err
	}
	live.Version = t.Version
	s.setRouteOverride(&live)
	return nil
}

// setRouteOverride makes the route tables published from now on use t in place of the registry's
// tenant of the same id (a cell routed just before its tenant is saved live), until
// clearRouteOverride(t.ID) or, if t.Version is set, until a listing of the registry shows the
// tenant at that version or a later one.
func (s *Supervisor) setRouteOverride(t *controlplane.Tenant) {
	s.routesMu.Lock()
	defer s.routesMu.Unlock()
	s.overrides[t.ID] = t
}

// clearRouteOverride removes the route override of tenant id, if any.
func (s *Supervisor) clearRouteOverride(id string) {
	s.routesMu.Lock()
	defer s.routesMu.Unlock()
	delete(s.overrides, id)
}

// waitHealthy polls GET http://<address>/healthz every HealthInterval until it answers 200,
// re-reading the address from the driver (a restarted cell may have moved), for at most
// HealthTimeout. It returns the cell's facts with the current address and pid.
func (s *Supervisor) waitHealthy(ctx context.Context, tenantID string, c controlplane.Cell) (controlplane.Cell, error) {
	deadline := time.Now().Add(s.opts.HealthTimeout)
	var last controlplane.CellStatus
	for {
		st, err := s.driver.Status(ctx, tenantID)
		if err == nil {
			last = st
			if st.Address != "" {
				c.Address, c.PID = st.Address, st.PID
			}
			if st.State == controlplane.CellRunning && s.healthy(ctx, st.Address) {
				c.StartedAt = st.StartedAt
				return c, nil
			}
		}
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("cell did not answer /healthz within %s", s.opts.HealthTimeout)
			if last.LastExit != "" {
				msg += fmt.Sprintf(" (last exit: %s, %d restarts)", last.LastExit, last.Restarts)
			}
			return c, errors.New(msg)
		}
		select {
		case <-ctx.Done():
			return c, ctx.Err()
		case <-time.After(s.opts.HealthInterval):
		}
	}
}

// healthy reports whether GET http://addr/healthz answers 200.
func (s *Supervisor) healthy(ctx context.Context, addr string) bool {
	if addr == "" {
		return false
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/healthz", nil)
	if err != nil {
		return false
	}
	resp, err := s.health.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// keepLive starts the cell of a live tenant that has none (after a control-plane restart) and
// records the driver's current facts (address, pid). It does not wait for health: the tenant
// stays live and its route follows the cell.
func (s *Supervisor) keepLive(ctx context.Context, t *controlplane.Tenant) error {
	st, err := s.driver.Status(ctx, t.ID)
	if err != nil {
		return err
	}
	c := t.Cell
	if st.State == controlplane.CellAbsent || st.State == controlplane.CellStopped {
		s.log.Info("starting cell of live tenant", attrTenantID, t.ID, attrKey, t.Key)
		cfg, err := s.cellConfig(ctx, t)
		if err != nil {
			return err
		}
		if c, err = s.driver.Start(ctx, cfg); err != nil {
			return err
		}
		c.Generation = t.Generation
	} else {
		c.Address, c.PID, c.StartedAt = st.Address, st.PID, st.StartedAt
	}
	if reflect.DeepEqual(c, t.Cell) {
		return nil
	}
	t.Cell = c
	return s.save(ctx, t, nil)
}

// restartCell restarts the cell of a live tenant whose configuration changed since it was started
// (Cell.Generation differs from Generation, e.g. after RotateKeys): it stops the cell, starts it
// with the current configuration on the same address (so the route table does not change), waits
// until it answers /healthz and records the generation with an event. The tenant stays live and
// routed throughout; only requests in the gap of about a quarter of a second fail. On failure
// nothing is recorded and the next pass tries again, so the step is idempotent.
func (s *Supervisor) restartCell(ctx context.Context, t *controlplane.Tenant) error {
	started := time.Now()
	cfg, err := s.cellConfig(ctx, t)
	if err != nil {
		return err
	}
	if err := s.driver.Stop(ctx, t.ID); err != nil {
		return err
	}
	cfg.ListenAddr = t.Cell.Address
	c, err := s.driver.Start(ctx, cfg)
	if err == nil {
		c, err = s.waitHealthy(ctx, t.ID, c)
	}
	if err != nil {
		return fmt.Errorf("restart cell with configuration generation %d: %w", t.Generation, err)
	}
	c.Generation = t.Generation
	t.Cell = c
	reason := fmt.Sprintf("cell restarted with configuration generation %d (signing kid %s), healthy after %dms",
		t.Generation, t.Secrets.SigningKeyID, time.Since(started).Milliseconds())
	ev := &controlplane.Event{TenantID: t.ID, From: t.State, To: t.State, At: time.Now().UTC(), Reason: reason}
	if err := s.save(ctx, t, ev); err != nil {
		return err
	}
	s.log.Info("cell restarted", attrTenantID, t.ID, attrKey, t.Key, "generation", t.Generation, "ms", time.Since(started).Milliseconds())
	if err := s.publishRoutes(ctx, nil, time.Time{}); err != nil {
		s.log.Error("publish routes", attrErr, err.Error())
	}
	return nil
}

// suspend: suspend-requested → suspended once the cell is stopped and its object-store
// credentials are revoked.
func (s *Supervisor) suspend(ctx context.Context, t *controlplane.Tenant) error {
	if err := s.driver.Stop(ctx, t.ID); err != nil {
		return err
	}
	if err := s.checkpoint(ctx, t, CheckpointCellStopped); err != nil {
		return err
	}
	if err := s.revokeObjectStore(ctx, t); err != nil {
		return err
	}
	if err := s.checkpoint(ctx, t, CheckpointRevoked); err != nil {
		return err
	}
	t.Cell.PID = 0
	return s.transition(ctx, t, controlplane.StateSuspended, "cell stopped")
}

// publishRoutes computes the route table from tenants as listed at listed (loaded now when nil),
// with the route overrides (setRouteOverride) replacing the tenants of the same id, and hands it
// to OnRoutes if it differs from the last one published. A list older than the one behind the
// last table is not published.
func (s *Supervisor) publishRoutes(ctx context.Context, tenants []*controlplane.Tenant, listed time.Time) error {
	if s.opts.OnRoutes == nil {
		return nil
	}
	s.routesMu.Lock()
	defer s.routesMu.Unlock()
	if tenants == nil {
		listed = time.Now()
		var err error
		if tenants, err = s.store.Tenants(ctx, controlplane.TenantFilter{}); err != nil {
			return err
		}
	}
	if listed.Before(s.routesListed) {
		return nil
	}
	s.routesListed = listed
	routes := make([]traefik.Route, 0, len(tenants))
	for id, o := range s.overrides {
		if o.Version > 0 && !slices.ContainsFunc(tenants, func(t *controlplane.Tenant) bool { return t.ID == id }) {
			delete(s.overrides, id) // saved live, then deleted
		}
	}
	for _, t := range tenants {
		if o := s.overrides[t.ID]; o != nil {
			if o.Version > 0 && t.Version >= o.Version {
				delete(s.overrides, t.ID) // the registry has caught up
			} else {
				t = o
			}
		}
		state := t.State.RouteState()
		if state == "" {
			continue
		}
		r := traefik.Route{TenantID: t.ID, Key: t.Key, Hosts: []string{s.opts.Platform.TenantHost(t.Key)}, State: state}
		if state == controlplane.RouteLive {
			addr := t.Cell.Address
			if st, err := s.driver.Status(ctx, t.ID); err == nil && st.Address != "" {
				addr = st.Address
			}
			if addr == "" {
				continue
			}
			r.Backend = "http://" + addr
		}
		routes = append(routes, r)
	}
	slices.SortFunc(routes, func(a, b traefik.Route) int { return strings.Compare(a.Key, b.Key) })
	if s.hasRoutes && reflect.DeepEqual(routes, s.published) {
		return nil
	}
	if err := s.opts.OnRoutes(routes); err != nil {
		return err
	}
	s.published, s.hasRoutes = routes, true
	s.log.Info("routes published", "routes", len(routes))
	return nil
}
