// Package mongodb is the tenant registry on MongoDB (official driver, v2 line). It is correct on
// MongoDB and on the embedded FerretDB v1, whose conditional updates are not atomic: uniqueness of
// a key among live tenants is arbitrated by an insert against a sparse unique index on liveKey
// (set while the tenant is not deleted, absent afterwards), each epoch of a tenant's lease by an
// insert against its unique _id (lease.go), and compare-and-set saves are also serialized per
// tenant inside this process. A tenant's event is written before the tenant (events.go), so a
// crash between the two writes never loses it.
package mongodb

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"atende/cell"
	"atende/controlplane"
)

// DefaultDatabase is the registry's database name.
const DefaultDatabase = "atende_registry"

// Collection names in the registry database.
const (
	tenantsCollection = "tenants"
	eventsCollection  = "events"
	leasesCollection  = "leases"
	savesCollection   = "tenant_saves"
)

// Store implements controlplane.Store on one MongoDB database.
type Store struct {
	client  *mongo.Client
	tenants *mongo.Collection
	events  *mongo.Collection
	leases  *mongo.Collection
	saves   *mongo.Collection // version claims, see SaveTenant
	owned   bool
	locks   sync.Map // tenant id -> *sync.Mutex
	// leaseHints remembers the latest lease epoch seen per tenant id (int64), where the search
	// for the latest epoch starts.
	leaseHints sync.Map
	// beforeSave, when set (tests only, see export_test.go), runs between the version claim and
	// the event and tenant writes of SaveTenant; an error it returns ends SaveTenant there, like
	// a crash (the claim is then applied by the next save attempt of that version).
	beforeSave func(tenantID string) error
}

var _ controlplane.Store = (*Store)(nil)

// Open connects to the MongoDB server at uri, pings it (within ctx), creates the indexes of
// database (DefaultDatabase when empty) and returns the store. Close disconnects.
func Open(ctx context.Context, uri, database string) (*Store, error) {
	client, err := mongo.Connect(options.Client().ApplyURI(uri).SetTimeout(30 * time.Second))
	if err != nil {
		return nil, fmt.Errorf("mongodb: connect: %w", err)
	}
	if err := client.Ping(ctx, nil); err != nil {
		_ = client.Disconnect(context.Background())
		return nil, fmt.Errorf("mongodb: ping %s: %w", uri, err)
	}
	s, err := New(ctx, client, database)
	if err != nil {
		_ = client.Disconnect(context.Background())
		return nil, err
	}
	s.owned = true
	return s, nil
}

// New returns a store on database (DefaultDatabase when empty) of an existing client, after
// creating its indexes: tenants {liveKey:1} unique sparse, {state:1}; events {tenantId:1,seq:1}
// unique. Close does not disconnect a client passed to New.
func New(ctx context.Context, client *mongo.Client, database string) (*Store, error) {
	if database == "" {
		database = DefaultDatabase
	}
	db := client.Database(database)
	s := &Store{client: client, tenants: db.Collection(tenantsCollection), events: db.Collection(eventsCollection),
		leases: db.Collection(leasesCollection), saves: db.Collection(savesCollection)}
	// One createIndexes command per index: FerretDB v1.24 panics (and drops the connection) on a
	// createIndexes with two or more indexes that all exist already, i.e. at every restart.
	for _, ix := range []struct {
		coll  *mongo.Collection
		model mongo.IndexModel
	}{
		{s.tenants, mongo.IndexModel{Keys: bson.D{{Key: "liveKey", Value: 1}}, Options: options.Index().SetName("liveKey_unique").SetUnique(true).SetSparse(true)}},
		{s.tenants, mongo.IndexModel{Keys: bson.D{{Key: "state", Value: 1}}, Options: options.Index().SetName("state")}},
		{s.events, mongo.IndexModel{Keys: bson.D{{Key: "tenantId", Value: 1}, {Key: "seq", Value: 1}}, Options: options.Index().SetName("tenant_seq_unique").SetUnique(true)}},
	} {
		if _, err := ix.coll.Indexes().CreateOne(ctx, ix.model); err != nil {
			return nil, fmt.Errorf("mongodb: index on %s: %w", ix.coll.Name(), err)
		}
	}
	return s, nil
}

// Client returns the underlying MongoDB client.
func (s *Store) Client() *mongo.Client { return s.client }

// Close disconnects the client if Open created it.
func (s *Store) Close(ctx context.Context) error {
	if !s.owned {
		return nil
	}
	return s.client.Disconnect(ctx)
}

// tenantDoc is the stored shape of a tenant.
type tenantDoc struct {
	ID             string             `bson:"_id"`
	Key            string             `bson:"key"`
	LiveKey        string             `bson:"liveKey,omitempty"`
	Name           string             `bson:"name"`
	State          string             `bson:"state"`
	StateReason    string             `bson:"stateReason,omitempty"`
	AllowedOrigins []string           `bson:"allowedOrigins"`
	Plan           string             `bson:"plan"`
	Limits         limitsDoc          `bson:"limits"`
	Branding       brandingDoc        `bson:"branding"`
	Webhooks       []webhookDoc       `bson:"webhooks"`
	Dedicated      bool               `bson:"dedicated"`
	Tier           string             `bson:"tier,omitempty"`
	Stack          stackDoc           `bson:"stack"`
	DatabasePass   string             `bson:"databasePassword,omitempty"`
	CreatedAt      time.Time          `bson:"createdAt"`
	UpdatedAt      time.Time          `bson:"updatedAt"`
	DeleteAt       *time.Time         `bson:"deleteAt,omitempty"`
	BeforeDeletion string             `bson:"stateBeforeDeletion,omitempty"`
	TeardownDone   int                `bson:"teardownDone,omitempty"`
	URL            string             `bson:"url"`
	Cell           cellDoc            `bson:"cell"`
	SigningSeed    []byte             `bson:"signingSeed"`
	SigningKeyID   string             `bson:"signingKid"`
	PreviousKeys   []previousKeyDoc   `bson:"previousKeys"`
	Generation     int64              `bson:"generation"`
	Tenancy        string             `bson:"tenancy,omitempty"`
	BootstrapUsers []bootstrapUserDoc `bson:"bootstrapUsers"`
	Version        int64              `bson:"version"`
	// LastEventSeq and LastEventNonce identify the tenant's latest event (events.go); zero for a
	// tenant saved before events were chained.
	LastEventSeq   int64  `bson:"lastEventSeq,omitempty"`
	LastEventNonce string `bson:"lastEventNonce,omitempty"`
}

type previousKeyDoc struct {
	KID       string    `bson:"kid"`
	PublicKey []byte    `bson:"publicKey"`
	RetiredAt time.Time `bson:"retiredAt"`
}

type limitsDoc struct {
	MaxAgents          int   `bson:"maxAgents"`
	MaxConcurrentChats int   `bson:"maxConcurrentChats"`
	MaxUploadBytes     int64 `bson:"maxUploadBytes"`
}

type brandingDoc struct {
	PrimaryColor string `bson:"primaryColor"`
	WelcomeText  string `bson:"welcomeText"`
}

type webhookDoc struct {
	URL    string   `bson:"url"`
	Events []string `bson:"events"`
}

type cellDoc struct {
	Driver      string     `bson:"driver,omitempty"`
	Address     string     `bson:"address,omitempty"`
	PID         int        `bson:"pid,omitempty"`
	ContainerID string     `bson:"containerId,omitempty"`
	Database    string     `bson:"database,omitempty"`
	S3Prefix    string     `bson:"s3Prefix,omitempty"`
	StartedAt   *time.Time `bson:"startedAt,omitempty"`
	Generation  int64      `bson:"generation,omitempty"`
}

// stackDoc is the stored shape of controlplane.Stack.
type stackDoc struct {
	Done           int    `bson:"done"`
	DatabaseAuth   string `bson:"databaseAuth,omitempty"`
	DatabaseUser   string `bson:"databaseUser,omitempty"`
	Network        string `bson:"network,omitempty"`
	DatabaseServer string `bson:"databaseServer,omitempty"`
	DatabaseVolume string `bson:"databaseVolume,omitempty"`
	DatabaseURI    string `bson:"databaseUri,omitempty"`
	Bucket         string `bson:"bucket,omitempty"`
}

type bootstrapUserDoc struct {
	Email        string   `bson:"email"`
	Name         string   `bson:"name"`
	Roles        []string `bson:"roles"`
	PasswordHash string   `bson:"passwordHash"`
}

func toDoc(t *controlplane.Tenant) tenantDoc {
	d := tenantDoc{
		ID: t.ID, Key: t.Key, Name: t.Name, State: string(t.State), StateReason: t.StateReason,
		AllowedOrigins: nonNil(t.AllowedOrigins), Plan: t.Plan,
		Limits:    limitsDoc{t.Limits.MaxAgents, t.Limits.MaxConcurrentChats, t.Limits.MaxUploadBytes},
		Branding:  brandingDoc{t.Branding.PrimaryColor, t.Branding.WelcomeText},
		Dedicated: t.Dedicated, CreatedAt: t.CreatedAt.UTC(), UpdatedAt: t.UpdatedAt.UTC(),
		DeleteAt: t.DeleteAt, BeforeDeletion: string(t.StateBeforeDeletion), TeardownDone: t.TeardownDone, URL: t.URL,
		Cell: cellDoc{t.Cell.Driver, t.Cell.Address, t.Cell.PID, t.Cell.ContainerID, t.Cell.Database,
			t.Cell.S3Prefix, t.Cell.StartedAt, t.Cell.Generation},
		SigningSeed: t.Secrets.SigningKeySeed, SigningKeyID: t.Secrets.SigningKeyID,
		PreviousKeys: []previousKeyDoc{}, Generation: t.Generation,
		Tier: t.Tier, Stack: stackDoc(t.Stack), DatabasePass: t.Secrets.DatabasePassword,
		Webhooks: []webhookDoc{}, BootstrapUsers: []bootstrapUserDoc{}, Version: t.Version,
	}
	d.Tenancy = t.Tenancy
	for _, k := range t.Secrets.PreviousKeys {
		d.PreviousKeys = append(d.PreviousKeys, previousKeyDoc{k.KID, k.PublicKey, k.RetiredAt.UTC()})
	}
	if t.State != controlplane.StateDeleted {
		d.LiveKey = t.Key
	}
	for _, w := range t.Webhooks {
		d.Webhooks = append(d.Webhooks, webhookDoc{w.URL, nonNil(w.Events)})
	}
	for _, u := range t.Secrets.BootstrapUsers {
		d.BootstrapUsers = append(d.BootstrapUsers, bootstrapUserDoc{u.Email, u.Name, nonNil(u.Roles), u.PasswordHash})
	}
	return d
}

func fromDoc(d tenantDoc) *controlplane.Tenant {
	t := &controlplane.Tenant{
		ID: d.ID, Key: d.Key, Name: d.Name, State: controlplane.State(d.State), StateReason: d.StateReason,
		AllowedOrigins: nonNil(d.AllowedOrigins), Plan: d.Plan,
		Limits:    controlplane.Limits{MaxAgents: d.Limits.MaxAgents, MaxConcurrentChats: d.Limits.MaxConcurrentChats, MaxUploadBytes: d.Limits.MaxUploadBytes},
		Branding:  controlplane.Branding{PrimaryColor: d.Branding.PrimaryColor, WelcomeText: d.Branding.WelcomeText},
		Webhooks:  []controlplane.Webhook{},
		Dedicated: d.Dedicated, CreatedAt: d.CreatedAt.UTC(), UpdatedAt: d.UpdatedAt.UTC(), URL: d.URL,
		Cell: controlplane.Cell{Driver: d.Cell.Driver, Address: d.Cell.Address, PID: d.Cell.PID,
			ContainerID: d.Cell.ContainerID, Database: d.Cell.Database, S3Prefix: d.Cell.S3Prefix, StartedAt: utcPtr(d.Cell.StartedAt),
			Generation: d.Cell.Generation},
		Secrets:    controlplane.Secrets{SigningKeySeed: d.SigningSeed, SigningKeyID: d.SigningKeyID},
		Generation: d.Generation, Version: d.Version,
	}
	for _, k := range d.PreviousKeys {
		t.Secrets.PreviousKeys = append(t.Secrets.PreviousKeys, cell.VerificationKey{KID: k.KID, PublicKey: k.PublicKey, RetiredAt: k.RetiredAt.UTC()})
	}
	t.DeleteAt = utcPtr(d.DeleteAt)
	t.Tenancy = d.Tenancy
	if t.Tenancy == "" { // saved before tenancy modes were recorded
		t.Tenancy = controlplane.TenancyStrict
	}
	t.Tier, t.Stack, t.Secrets.DatabasePassword = d.Tier, controlplane.Stack(d.Stack), d.DatabasePass
	if t.Tier == "" { // saved before tiers were recorded
		t.Tier = controlplane.TierShared
		if t.Dedicated {
			t.Tier = controlplane.TierDedicated
		}
	}
	t.StateBeforeDeletion, t.TeardownDone = controlplane.State(d.BeforeDeletion), d.TeardownDone
	for _, w := range d.Webhooks {
		t.Webhooks = append(t.Webhooks, controlplane.Webhook{URL: w.URL, Events: nonNil(w.Events)})
	}
	for _, u := range d.BootstrapUsers {
		t.Secrets.BootstrapUsers = append(t.Secrets.BootstrapUsers, cell.BootstrapUser{Email: u.Email, Name: u.Name, Roles: nonNil(u.Roles), PasswordHash: u.PasswordHash})
	}
	return t
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// CreateTenant implements controlplane.Store. The insert against the unique liveKey index is the
// arbiter of "one live tenant per key", on MongoDB and on FerretDB alike. The registration event
// is written first (see events.go); if the tenant cannot be inserted it is deleted again, and one
// left behind by a crash is never shown (its tenant does not exist).
func (s *Store) CreateTenant(ctx context.Context, t *controlplane.Tenant, ev controlplane.Event) error {
	ev.Seq = 1
	e := newEventDoc(ev, 0, "")
	if err := s.putEvent(ctx, e); err != nil {
		return err
	}
	t.Version = 1
	d := toDoc(t)
	d.LastEventSeq, d.LastEventNonce = e.Seq, e.Nonce
	if _, err := s.tenants.InsertOne(ctx, d); err != nil {
		t.Version = 0
		_, _ = s.events.DeleteOne(context.WithoutCancel(ctx), bson.D{{Key: "_id", Value: e.ID}})
		if isDuplicate(err) {
			return controlplane.Errorf(controlplane.EConflict, "the key %q is already taken by another tenant", t.Key)
		}
		return fmt.Errorf("mongodb: insert tenant: %w", err)
	}
	return nil
}

// Tenant implements controlplane.Store.
func (s *Store) Tenant(ctx context.Context, id string) (*controlplane.Tenant, error) {
	return s.findOne(ctx, bson.D{{Key: "_id", Value: id}}, "no tenant with id %q", id)
}

// TenantByKey implements controlplane.Store.
func (s *Store) TenantByKey(ctx context.Context, key string) (*controlplane.Tenant, error) {
	return s.findOne(ctx, bson.D{{Key: "liveKey", Value: key}}, "no tenant with key %q", key)
}

func (s *Store) findOne(ctx context.Context, filter bson.D, format, arg string) (*controlplane.Tenant, error) {
	d, err := s.findDoc(ctx, filter, format, arg)
	if err != nil {
		return nil, err
	}
	return fromDoc(d), nil
}

// findDoc returns the stored tenant matching filter, or a not_found *Error with the message
// format and arg.
func (s *Store) findDoc(ctx context.Context, filter bson.D, format, arg string) (tenantDoc, error) {
	var d tenantDoc
	if err := s.tenants.FindOne(ctx, filter).Decode(&d); err != nil {
		if errors.Is(err, mongo.ErrNoDocuments) {
			return d, controlplane.Errorf(controlplane.ENotFound, format, arg)
		}
		return d, fmt.Errorf("mongodb: find tenant: %w", err)
	}
	return d, nil
}

// Tenants implements controlplane.Store. Sorting happens in Go: the registry is small and sorted
// finds scan the whole collection on FerretDB anyway.
func (s *Store) Tenants(ctx context.Context, f controlplane.TenantFilter) ([]*controlplane.Tenant, error) {
	filter := bson.D{}
	switch {
	case len(f.States) > 0:
		states := make([]string, len(f.States))
		for i, st := range f.States {
			states[i] = string(st)
		}
		filter = bson.D{{Key: "state", Value: bson.D{{Key: "$in", Value: states}}}}
	case !f.IncludeDeleted:
		filter = bson.D{{Key: "state", Value: bson.D{{Key: "$ne", Value: string(controlplane.StateDeleted)}}}}
	}
	cur, err := s.tenants.Find(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("mongodb: find tenants: %w", err)
	}
	var docs []tenantDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("mongodb: read tenants: %w", err)
	}
	out := make([]*controlplane.Tenant, 0, len(docs))
	for _, d := range docs {
		out = append(out, fromDoc(d))
	}
	sortTenants(out)
	return out, nil
}

func sortTenants(ts []*controlplane.Tenant) {
	slices.SortFunc(ts, func(a, b *controlplane.Tenant) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// SaveTenant implements controlplane.Store as a compare-and-set on Version that holds across
// control planes on FerretDB too. FerretDB v1 applies a conditional replace as a read, then a
// write, so two control planes replacing {_id, version: v} at the same moment could both
// succeed (measured on a similar compare-and-set: 2 to 5 winners of 20). The decision is
// therefore an insert against a unique _id: the save of version v+1 first inserts the version
// claim "<tenantId>:<v+1>" into tenant_saves, holding the document and event to write. Exactly
// one claim per version exists; its writer applies it. A crash after the claim leaves the tenant
// at v with its claim decided: the next save attempt of v finds the claim, applies it (the same
// document, so applying twice is harmless) and answers conflict, and its caller reloads v+1.
//
// The event, if any, is written after the claim and before the tenant (events.go), so only the
// winner of a version writes its event and readers never see a saved state without its event.
// Saves of one tenant are also serialized in-process.
func (s *Store) SaveTenant(ctx context.Context, t *controlplane.Tenant, ev *controlplane.Event) error {
	mu := s.lock(t.ID)
	mu.Lock()
	defer mu.Unlock()
	cur, err := s.findDoc(ctx, bson.D{{Key: "_id", Value: t.ID}}, "no tenant with id %q", t.ID)
	if err != nil {
		return err
	}
	if cur.Version != t.Version {
		return controlplane.Errorf(controlplane.EConflict, "tenant %q was changed concurrently; reload and retry", t.ID)
	}
	next := *t
	next.Version = t.Version + 1
	d := toDoc(&next)
	d.LastEventSeq, d.LastEventNonce = cur.LastEventSeq, cur.LastEventNonce
	c := saveClaim{ID: EventID(t.ID, next.Version), TenantID: t.ID, Version: next.Version, At: time.Now().UTC()}
	if ev != nil {
		committed := *ev
		committed.Seq = next.Version
		e := newEventDoc(committed, cur.LastEventSeq, cur.LastEventNonce)
		c.Event = &e
		d.LastEventSeq, d.LastEventNonce = e.Seq, e.Nonce
	}
	c.Doc = d
	if _, err := s.saves.InsertOne(ctx, c); err != nil {
		if !isDuplicate(err) {
			return fmt.Errorf("mongodb: claim version %d of tenant %s: %w", next.Version, t.ID, err)
		}
		// Another save won this version: make sure it is applied, then lose.
		var won saveClaim
		if err := s.saves.FindOne(ctx, bson.D{{Key: "_id", Value: c.ID}}).Decode(&won); err == nil {
			_ = s.applyClaim(ctx, won) // on failure the next attempt applies it again
		}
		return controlplane.Errorf(controlplane.EConflict, "tenant %q was changed concurrently; reload and retry", t.ID)
	}
	if s.beforeSave != nil {
		if err := s.beforeSave(t.ID); err != nil {
			return err
		}
	}
	if err := s.applyClaim(ctx, c); err != nil {
		if isDuplicate(err) {
			// The key is taken by another live tenant: this version can never be applied, so the
			// claim is withdrawn (nobody else could apply it either) and v+1 is free again.
			_, _ = s.saves.DeleteOne(context.WithoutCancel(ctx), bson.D{{Key: "_id", Value: c.ID}})
			return controlplane.Errorf(controlplane.EConflict, "the key %q is already taken by another tenant", t.Key)
		}
		return err
	}
	t.Version = next.Version
	if ev != nil {
		ev.Seq = t.Version
	}
	// The claim of the previous version is no longer needed by anyone: it is applied.
	_, _ = s.saves.DeleteOne(context.WithoutCancel(ctx), bson.D{{Key: "_id", Value: EventID(t.ID, t.Version-1)}})
	return nil
}

// saveClaim is a decided save: version Version of the tenant is Doc, with Event (if any).
type saveClaim struct {
	ID       string    `bson:"_id"`
	TenantID string    `bson:"tenantId"`
	Version  int64     `bson:"version"`
	At       time.Time `bson:"at"`
	Doc      tenantDoc `bson:"doc"`
	Event    *eventDoc `bson:"event,omitempty"`
}

// applyClaim writes a decided save: its event under its id (replacing any other left there),
// then the tenant document if the tenant is still at the version before. It is idempotent: a
// tenant already at the claim's version (applied by someone else) is left as it is.
func (s *Store) applyClaim(ctx context.Context, c saveClaim) error {
	if c.Event != nil {
		if err := s.putEvent(ctx, *c.Event); err != nil {
			return err
		}
	}
	res, err := s.tenants.ReplaceOne(ctx, bson.D{{Key: "_id", Value: c.TenantID}, {Key: "version", Value: c.Version - 1}}, c.Doc)
	if err != nil {
		if isDuplicate(err) {
			return err
		}
		return fmt.Errorf("mongodb: save tenant: %w", err)
	}
	if res.MatchedCount == 0 {
		cur, err := s.findDoc(ctx, bson.D{{Key: "_id", Value: c.TenantID}}, "no tenant with id %q", c.TenantID)
		if err != nil {
			return err
		}
		if cur.Version < c.Version {
			return controlplane.Errorf(controlplane.EConflict, "tenant %q is at version %d, the claim is for %d", c.TenantID, cur.Version, c.Version)
		}
	}
	if c.Event != nil {
		// The state is saved: make sure its event is the one stored under its sequence number,
		// even if ctx is cancelled now.
		return s.confirmEvent(context.WithoutCancel(ctx), *c.Event)
	}
	return nil
}

func (s *Store) lock(id string) *sync.Mutex {
	m, _ := s.locks.LoadOrStore(id, &sync.Mutex{})
	return m.(*sync.Mutex)
}

// isDuplicate reports whether err is a unique-index violation: E11000 from MongoDB and from
// FerretDB inserts, or the InternalError FerretDB v1 returns for a duplicate caused by an update.
func isDuplicate(err error) bool {
	if mongo.IsDuplicateKeyError(err) {
		return true
	}
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "duplicate key") || strings.Contains(msg, "e11000")
}

// TenantDatabases drops tenants' databases on teardown. It implements controlplane.DataRemover.
type TenantDatabases struct {
	// Client is connected to the server holding the tenants' databases.
	Client *mongo.Client
}

// RemoveTenantData drops the database controlplane.DatabaseName(t.ID). Dropping a database that
// does not exist succeeds.
func (d TenantDatabases) RemoveTenantData(ctx context.Context, t *controlplane.Tenant) error {
	if err := d.Client.Database(controlplane.DatabaseName(t.ID)).Drop(ctx); err != nil {
		return fmt.Errorf("mongodb: drop database of tenant %s: %w", t.ID, err)
	}
	return nil
}
