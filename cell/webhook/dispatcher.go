package webhook

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"atende/cell"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Collection names in the cell's database.
const (
	// EventsCollection holds one record per published event (`_id` = event id).
	EventsCollection = "webhook_events"
	// OutboxCollection holds the events still to deliver (`_id` = event id).
	OutboxCollection = "webhook_outbox"
	// DeliveriesCollection is the delivery log (`_id` = "d:<seq, 12 digits>").
	DeliveriesCollection = "webhook_deliveries"
	// StateCollection holds the lease epochs and the delivery log's head hint.
	StateCollection = "webhook_state"
)

// Defaults of Options.
const (
	// DefaultTimeout is the default limit of one attempt (Options.Timeout).
	DefaultTimeout = 5 * time.Second
	// DefaultMaxAttempts is the default number of attempts per event and endpoint.
	DefaultMaxAttempts = 10
	// DefaultBackoffBase is the default first backoff step (Options.BackoffBase).
	DefaultBackoffBase = 30 * time.Second
	// DefaultBackoffMax is the default cap of a backoff step (Options.BackoffMax).
	DefaultBackoffMax = time.Hour
	// DefaultLeaseTTL is the default lifetime of an unrenewed lease (Options.LeaseTTL).
	DefaultLeaseTTL = 30 * time.Second
	// DefaultRescan is the default interval of the holder's outbox rescan (Options.Rescan).
	DefaultRescan = 10 * time.Second
	// DefaultKeepDeliveries is the default number of delivery log entries kept.
	DefaultKeepDeliveries = 10000
)

// MaxDeliveriesPage is the most entries one Deliveries call returns.
const MaxDeliveriesPage = 200

// EndpointsFunc returns the tenant's current webhook endpoints. It is called on every Publish
// (an event no endpoint wants is not stored) and before every delivery attempt, so it should be
// cheap (e.g. read cached settings); an error skips the Publish (returned) or postpones the
// attempt (by Options.BackoffBase, at most 30 s).
type EndpointsFunc func(ctx context.Context) ([]Endpoint, error)

// Options tunes a Dispatcher. Zero values take the defaults above.
type Options struct {
	// Timeout bounds one attempt: connect, TLS, request and response headers (default 5 s).
	Timeout time.Duration
	// MaxAttempts is how many attempts an event gets per endpoint before it fails (default 10).
	MaxAttempts int
	// BackoffBase and BackoffMax shape the wait between attempts (see Backoff; defaults 30 s and
	// 1 h).
	BackoffBase, BackoffMax time.Duration
	// LeaseTTL is how long a lease lasts without renewal (default 30 s, at least 3·Timeout); the
	// holder renews every third of it and starts an attempt only if its lease outlives the
	// attempt's Timeout. A crashed holder's events resume on another replica within about
	// 1.25·LeaseTTL.
	LeaseTTL time.Duration
	// Rescan is how often the lease holder rereads the outbox to find events published by other
	// replicas of the cell (default 10 s); events published through this Dispatcher are seen
	// at once.
	Rescan time.Duration
	// KeepDeliveries is how many of the newest delivery log entries are kept (default 10000).
	KeepDeliveries int64
	// AllowPrivateNetworks lets endpoints be loopback, private or link-local addresses. Off by
	// default (SSRF guard); only for local development and tests.
	AllowPrivateNetworks bool
	// Holder names this Dispatcher in the lease (default: random). Two Dispatchers must never
	// share one.
	Holder string
	// Logger receives warnings about failed database writes and lease changes (default: discard).
	// Event payloads and secrets are never logged.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = DefaultBackoffBase
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = DefaultBackoffMax
	}
	if o.BackoffMax < o.BackoffBase {
		o.BackoffMax = o.BackoffBase
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.LeaseTTL < 3*o.Timeout { // an attempt must fit in what is left of the lease between renewals
		o.LeaseTTL = 3 * o.Timeout
	}
	if o.Rescan <= 0 {
		o.Rescan = DefaultRescan
	}
	if o.KeepDeliveries <= 0 {
		o.KeepDeliveries = DefaultKeepDeliveries
	}
	if o.Holder == "" {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		o.Holder = hex.EncodeToString(b)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Dispatcher persists a tenant's events (Publish) and delivers them (Run). It is safe for
// concurrent use; create one per cell process.
type Dispatcher struct {
	tenantID   string
	endpoints  EndpointsFunc
	opts       Options
	log        *slog.Logger
	client     *http.Client
	events     *mongo.Collection
	outbox     *mongo.Collection
	deliveries *mongo.Collection
	state      *mongo.Collection
	now        func() time.Time

	randMu sync.Mutex
	rand   *mrand.Rand

	mu      sync.Mutex
	lastSeq int64    // the newest order key handed out by Publish
	fresh   []queued // events published here since the deliverer last looked
	kick    chan struct{}
	running atomic.Bool
	logSeq  int64 // the delivery log's head, owned by the deliverer while it holds the lease
}

// TenantID returns the tenant whose events d delivers.
func (d *Dispatcher) TenantID() string { return d.tenantID }

// New returns the Dispatcher of tenantID on db, the cell's database. endpoints supplies the
// tenant's current webhook settings. It fails on an empty tenantID or a nil db or endpoints.
func New(db *mongo.Database, tenantID string, endpoints EndpointsFunc, opts Options) (*Dispatcher, error) {
	if db == nil || endpoints == nil || tenantID == "" {
		return nil, errors.New("webhook: db, tenantID and endpoints are required")
	}
	opts = opts.withDefaults()
	var seed [32]byte
	_, _ = rand.Read(seed[:])
	return &Dispatcher{
		tenantID: tenantID, endpoints: endpoints, opts: opts, log: opts.Logger,
		client: newHTTPClient(opts.AllowPrivateNetworks, opts.Timeout),
		events: db.Collection(EventsCollection), outbox: db.Collection(OutboxCollection),
		deliveries: db.Collection(DeliveriesCollection), state: db.Collection(StateCollection),
		now:  func() time.Time { return time.Now().UTC() },
		rand: mrand.New(mrand.NewChaCha8(seed)), kick: make(chan struct{}, 1),
	}, nil
}

// eventDoc is the permanent record of a published event (webhook_events).
type eventDoc struct {
	ID         string     `bson:"_id"`
	TenantID   string     `bson:"tenantId"`
	Type       EventType  `bson:"type"`
	OccurredAt time.Time  `bson:"occurredAt"`
	CreatedAt  time.Time  `bson:"createdAt"`
	Status     Status     `bson:"status"`
	FinishedAt *time.Time `bson:"finishedAt,omitempty"`
	Body       string     `bson:"body"`
}

// outboxDoc is an event still to deliver (webhook_outbox). Order is the Publish order key
// (Unix nanoseconds, strictly increasing per process); Body is the exact JSON POSTed.
type outboxDoc struct {
	ID         string    `bson:"_id"`
	TenantID   string    `bson:"tenantId"`
	Type       EventType `bson:"type"`
	Order      int64     `bson:"order"`
	CreatedAt  time.Time `bson:"createdAt"`
	OccurredAt time.Time `bson:"occurredAt"`
	Body       string    `bson:"body"`
	Targets    []target  `bson:"targets"`
}

// target is the delivery state of one event for one endpoint, keyed by the endpoint's URL hash.
type target struct {
	Key      string    `bson:"key"`
	Attempts int       `bson:"attempts"`
	NextAt   time.Time `bson:"nextAt"`
	Done     string    `bson:"done,omitempty"` // "", OutcomeDelivered or OutcomeFailed
}

// Publish stores e in the outbox for delivery and returns once it is persisted. Publishing an id
// that was published before stores nothing and returns nil, whatever became of the first event.
// If no endpoint wants e.Type right now, nothing is stored either. Errors: invalid (cell.EInvalid:
// bad id, type, tenant or payload), the EndpointsFunc's error, or a database error.
func (d *Dispatcher) Publish(ctx context.Context, e Event) error {
	if err := d.validate(&e); err != nil {
		return err
	}
	eps, err := d.endpoints(ctx)
	if err != nil {
		return fmt.Errorf("webhook: endpoints: %w", err)
	}
	if !anyWants(eps, e.Type) {
		return nil
	}
	// Published before (pending or finished)? The record is written last, so it proves the outbox
	// document was written.
	var rec eventDoc
	switch err := d.get(ctx, d.events, e.ID, &rec); {
	case err == nil:
		return nil
	case !errors.Is(err, mongo.ErrNoDocuments):
		return fmt.Errorf("webhook: publish %s: %w", e.ID, err)
	}
	now := d.now()
	body := envelope(e)
	order := d.nextOrder(now)
	// Outbox first, record second: a crash in between leaves a deliverable event, never a record
	// that blocks a retried Publish while nothing would deliver it.
	_, err = d.outbox.InsertOne(ctx, outboxDoc{ID: e.ID, TenantID: d.tenantID, Type: e.Type, Order: order,
		CreatedAt: now, OccurredAt: e.OccurredAt, Body: body, Targets: []target{}})
	if err != nil && !isDuplicate(err) {
		return fmt.Errorf("webhook: publish %s: %w", e.ID, err)
	}
	_, err = d.events.InsertOne(ctx, eventDoc{ID: e.ID, TenantID: d.tenantID, Type: e.Type,
		OccurredAt: e.OccurredAt, CreatedAt: now, Status: StatusPending, Body: body})
	if err != nil && !isDuplicate(err) {
		return fmt.Errorf("webhook: publish %s: %w", e.ID, err)
	}
	d.mu.Lock()
	if len(d.fresh) < 10000 { // beyond that, the deliverer's rescan finds them
		d.fresh = append(d.fresh, queued{id: e.ID, order: order}) // due at once, in Publish order
	}
	d.mu.Unlock()
	select {
	case d.kick <- struct{}{}:
	default:
	}
	return nil
}

// validate checks e and fills its defaults (tenant, occurredAt, compact payload).
func (d *Dispatcher) validate(e *Event) error {
	switch {
	case !eventIDPattern.MatchString(e.ID):
		return cell.Errorf(cell.EInvalid, "webhook event id must be 1-200 letters, digits or _.:-")
	case !e.Type.Valid():
		return cell.Errorf(cell.EInvalid, "unknown webhook event type %q", e.Type)
	case e.TenantID != "" && e.TenantID != d.tenantID:
		return cell.Errorf(cell.EInvalid, "webhook event of another tenant")
	case len(e.Payload) > MaxPayloadBytes:
		return cell.Errorf(cell.EInvalid, "webhook payload larger than %d bytes", MaxPayloadBytes)
	}
	e.TenantID = d.tenantID
	if e.OccurredAt.IsZero() {
		e.OccurredAt = d.now()
	}
	e.OccurredAt = e.OccurredAt.UTC().Truncate(time.Millisecond)
	p := bytes.TrimSpace(e.Payload)
	if len(p) == 0 {
		p = []byte("{}")
	}
	if p[0] != '{' || !json.Valid(p) {
		return cell.Errorf(cell.EInvalid, "webhook payload must be a JSON object")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, p); err != nil {
		return cell.Errorf(cell.EInvalid, "webhook payload must be a JSON object")
	}
	e.Payload = buf.Bytes()
	return nil
}

// envelope returns the body POSTed for e: the envelope fields, then the payload as "data".
// Built by hand so the payload's bytes are sent exactly as given (json.Marshal would re-escape).
func envelope(e Event) string {
	str := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	return `{"id":` + str(e.ID) + `,"type":` + str(string(e.Type)) + `,"tenantId":` + str(e.TenantID) +
		`,"occurredAt":` + str(e.OccurredAt.Format("2006-01-02T15:04:05.000Z07:00")) +
		`,"data":` + string(e.Payload) + `}`
}

func anyWants(eps []Endpoint, t EventType) bool {
	for _, ep := range eps {
		if ep.Wants(t) {
			return true
		}
	}
	return false
}

// nextOrder returns a strictly increasing order key near now (Unix nanoseconds).
func (d *Dispatcher) nextOrder(now time.Time) int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lastSeq = max(now.UnixNano(), d.lastSeq+1)
	return d.lastSeq
}

// Pending returns how many events wait in the outbox for delivery (a scan of the outbox, which
// holds only unfinished events).
func (d *Dispatcher) Pending(ctx context.Context) (int64, error) {
	n, err := d.outbox.CountDocuments(ctx, bson.D{{Key: "tenantId", Value: d.tenantID}})
	if err != nil {
		return 0, fmt.Errorf("webhook: pending: %w", err)
	}
	return n, nil
}

// Status returns where the event with id is: pending, delivered, failed or dropped. An id never
// published (or published while no endpoint wanted its type) is cell.ENotFound.
func (d *Dispatcher) Status(ctx context.Context, id string) (Status, error) {
	var rec eventDoc
	err := d.get(ctx, d.events, id, &rec)
	if errors.Is(err, mongo.ErrNoDocuments) {
		// A Publish may be between its two inserts.
		var ob outboxDoc
		if err = d.get(ctx, d.outbox, id, &ob); err == nil {
			return StatusPending, nil
		}
	}
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		return "", cell.Errorf(cell.ENotFound, "webhook event not found")
	case err != nil:
		return "", fmt.Errorf("webhook: status: %w", err)
	}
	return rec.Status, nil
}

// deliveryDoc is one delivery log entry (webhook_deliveries).
type deliveryDoc struct {
	ID       string `bson:"_id"`
	TenantID string `bson:"tenantId"`
	Delivery `bson:",inline"`
}

func deliveryID(seq int64) string { return fmt.Sprintf("d:%012d", seq) }

const deliveriesHeadID = "deliveries-head"

// Deliveries returns up to limit (1 to MaxDeliveriesPage; out of range means 50) delivery log
// entries, newest first, with Seq < before (before ≤ 0 starts at the newest). Only the newest
// Options.KeepDeliveries entries are kept. It reads by point reads on `_id` from the log's head.
func (d *Dispatcher) Deliveries(ctx context.Context, limit int, before int64) ([]Delivery, error) {
	if limit < 1 || limit > MaxDeliveriesPage {
		limit = 50
	}
	head, err := d.deliveryHead(ctx)
	if err != nil {
		return nil, err
	}
	start := head
	if before > 0 && before-1 < head {
		start = before - 1
	}
	out := []Delivery{}
	// Tolerate a few holes (an entry lost to a crash between two writes); stop below the kept
	// window.
	misses := 0
	for seq := start; seq >= 1 && len(out) < limit && misses < 8; seq-- {
		var doc deliveryDoc
		switch err := d.get(ctx, d.deliveries, deliveryID(seq), &doc); {
		case errors.Is(err, mongo.ErrNoDocuments):
			misses++
		case err != nil:
			return nil, fmt.Errorf("webhook: deliveries: %w", err)
		default:
			misses = 0
			out = append(out, doc.Delivery)
		}
	}
	return out, nil
}

// deliveryHead returns the seq of the newest delivery log entry (0 if none): the head hint,
// then point reads forward past entries written after it.
func (d *Dispatcher) deliveryHead(ctx context.Context) (int64, error) {
	var hint struct {
		Seq int64 `bson:"seq"`
	}
	if err := d.get(ctx, d.state, deliveriesHeadID, &hint); err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return 0, fmt.Errorf("webhook: deliveries head: %w", err)
	}
	head := hint.Seq
	for {
		ok, err := d.exists(ctx, d.deliveries, deliveryID(head+1))
		if err != nil {
			return 0, fmt.Errorf("webhook: deliveries head: %w", err)
		}
		if !ok {
			return head, nil
		}
		head++
	}
}

// get reads the document with _id id into out by a pushed-down point read. A document of another
// tenant reads as mongo.ErrNoDocuments.
func (d *Dispatcher) get(ctx context.Context, c *mongo.Collection, id string, out any) error {
	raw, err := c.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Raw()
	if err != nil {
		return err
	}
	if tid, ok := raw.Lookup("tenantId").StringValueOK(); !ok || tid != d.tenantID {
		return mongo.ErrNoDocuments
	}
	return bson.Unmarshal(raw, out)
}

// exists reports whether this tenant's document with _id id exists.
func (d *Dispatcher) exists(ctx context.Context, c *mongo.Collection, id string) (bool, error) {
	var doc bson.Raw
	err := d.get(ctx, c, id, &doc)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, mongo.ErrNoDocuments):
		return false, nil
	default:
		return false, err
	}
}

// setByID applies upd to the document with _id id (a pushed-down point write) and reports
// whether it matched.
func (d *Dispatcher) setByID(ctx context.Context, c *mongo.Collection, id string, upd bson.D) (bool, error) {
	res, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, upd)
	if err != nil {
		return false, err
	}
	return res.MatchedCount > 0, nil
}

// upsertByID is setByID that creates the document when missing.
func (d *Dispatcher) upsertByID(ctx context.Context, c *mongo.Collection, id string, set bson.D) error {
	set = append(bson.D{{Key: "tenantId", Value: d.tenantID}}, set...)
	_, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: set}},
		options.UpdateOne().SetUpsert(true))
	if err != nil && isDuplicate(err) { // two first writers; the other one created it
		_, err = c.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: set}})
	}
	return err
}

// isDuplicate reports a duplicate key error (E11000, or the message FerretDB v1 uses).
func isDuplicate(err error) bool {
	return mongo.IsDuplicateKeyError(err) || strings.Contains(err.Error(), "duplicate key")
}

// jitter returns a uniform number in [0, 1).
func (d *Dispatcher) jitter() float64 {
	d.randMu.Lock()
	defer d.randMu.Unlock()
	return d.rand.Float64()
}
