// Package platformhook delivers every tenant lifecycle event of the registry to one platform URL
// (ATENDE_PLATFORM_WEBHOOK_URL) as a signed HTTP POST: in order per tenant, at least once, with
// retries, and a delivery log the super-admin API lists (GET /api/webhooks/deliveries, ctl
// webhooks deliveries).
//
// # What a receiver gets
//
// One POST per event, Content-Type application/json, the body
//
//	{"id":"<tenantId>:<seq>","type":"tenant.live","tenantId":"…","tenantKey":"acme","seq":4,
//	 "from":"creating","to":"live","at":"2026-01-02T03:04:05.678Z","reason":"cell healthy after 310ms"}
//
// where id is the event's stored id in the registry (controlplane/mongodb.EventID), the same on
// every retry, so receivers deduplicate by it; seq orders a tenant's events (it has gaps: saves
// without an event also count); from is "" for the registration. The body is byte-identical on
// every attempt. The headers are those of the cell's tenant webhooks (atende/cell/webhook):
//
//	X-Atende-Event-Id    the event id
//	X-Atende-Event       the type
//	X-Atende-Timestamp   the attempt's time, Unix seconds
//	X-Atende-Signature   sha256=<hex HMAC-SHA256(ATENDE_PLATFORM_WEBHOOK_SECRET, timestamp + "." + body)>
//	X-Atende-Attempt     the attempt number, from 1
//
// signed with webhook.Sign and checked the same way a receiver of tenant webhooks checks them
// (webhook.Verify: constant-time comparison, timestamp within a tolerance).
//
// # Types
//
// The types form a stable set (Types): "tenant.registered" for a tenant's first event, then
// "tenant.<state>" for every move into a lifecycle state (controlplane.States: tenant.creating,
// tenant.live, tenant.creation-failed, tenant.suspend-requested, tenant.suspended,
// tenant.resume-requested, tenant.resume-failed, tenant.deletion-pending, tenant.deleting,
// tenant.deletion-failed, tenant.deleted, and tenant.creation-requested when a failed creation or
// a cancelled deletion starts again), and "tenant.updated" for an event that keeps the state
// (signing-key rotation, tenancy change, a teardown step, an export or import), whose reason says
// what changed.
//
// # Delivery
//
// The registry's events are the outbox: each is written before the tenant state it records
// (controlplane/mongodb, events.go) and kept for good, so nothing is lost when the control plane
// crashes or the receiver is down. A cursor per tenant (controlplane.WebhookCursor, in the
// registry) says up to which event the tenant is done. One deliverer at a time sends (the
// holder of the lease LeaseName, claimed like the tenants' leases by inserts against unique ids,
// FerretDB-safe): every Options.Poll (or Poke) it lists the tenants, and for each whose Version
// passed its cursor reads its events (only those of saves that happened) and sends those after
// the cursor one at a time, oldest first. A tenant's next event waits until the one before is
// finished: delivered (a 2xx within Options.Timeout) or failed after Options.MaxAttempts attempts,
// spaced by webhook.Backoff (exponential, equal jitter); other tenants' events go on meanwhile.
// Redirects are never followed (a 3xx is a failed attempt). Each attempt is recorded in the
// delivery log, then the cursor; a crash between a receiver's 2xx and the cursor's save sends
// that one event again with the same id (at least once).
//
// Enabling the webhooks on an existing registry offers every tenant's history, oldest event first.
// The platform URL is the operator's, not tenant input: unlike tenant webhooks, private and
// loopback addresses are allowed and proxies from the environment are used.
package platformhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"atende/cell/webhook"
	"atende/controlplane"
	"atende/controlplane/mongodb"
)

// LeaseName is the name the delivery lease is held under in the registry's leases (it cannot be
// a tenant id, which has no '-').
const LeaseName = "platform-webhooks"

// Event types besides "tenant.<state>" (see the package doc and Types).
const (
	// TypeRegistered is the type of a tenant's registration event (From empty).
	TypeRegistered = "tenant.registered"
	// TypeUpdated is the type of an event that keeps the tenant's state (From equal to To).
	TypeUpdated = "tenant.updated"
)

// TypeOf returns the webhook type of ev: TypeRegistered, TypeUpdated or "tenant.<ev.To>".
func TypeOf(ev controlplane.Event) string {
	switch {
	case ev.From == "":
		return TypeRegistered
	case ev.From == ev.To:
		return TypeUpdated
	default:
		return "tenant." + string(ev.To)
	}
}

// Types returns every type a receiver can get: TypeRegistered, "tenant.<state>" for each
// lifecycle state in controlplane.States order, and TypeUpdated.
func Types() []string {
	out := []string{TypeRegistered}
	for _, s := range controlplane.States() {
		out = append(out, "tenant."+string(s))
	}
	return append(out, TypeUpdated)
}

// Body is the JSON body of a delivery (see the package doc).
type Body struct {
	// ID is the event's stored id, "<tenantId>:<seq>".
	ID string `json:"id"`
	// Type is TypeOf(the event).
	Type string `json:"type"`
	// TenantID and TenantKey name the tenant.
	TenantID  string `json:"tenantId"`
	TenantKey string `json:"tenantKey"`
	// Seq orders the tenant's events.
	Seq int64 `json:"seq"`
	// From and To are the states before and after; From is "" for the registration.
	From string `json:"from"`
	To   string `json:"to"`
	// At is when the event was saved (UTC, millisecond precision as stored).
	At time.Time `json:"at"`
	// Reason explains the event.
	Reason string `json:"reason"`
}

// NewBody returns the body of the delivery of ev, an event of the tenant with key.
func NewBody(key string, ev controlplane.Event) Body {
	return Body{ID: mongodb.EventID(ev.TenantID, ev.Seq), Type: TypeOf(ev), TenantID: ev.TenantID, TenantKey: key,
		Seq: ev.Seq, From: string(ev.From), To: string(ev.To), At: ev.At.UTC(), Reason: ev.Reason}
}

// Defaults of Options.
const (
	// DefaultTimeout bounds one attempt (Options.Timeout).
	DefaultTimeout = 10 * time.Second
	// DefaultMaxAttempts is how many attempts an event gets (Options.MaxAttempts): with the
	// default backoff the last comes about 3.2 to 6.4 hours after the first.
	DefaultMaxAttempts = 15
	// DefaultBackoffBase and DefaultBackoffMax shape the waits between attempts (webhook.Backoff).
	DefaultBackoffBase = 10 * time.Second
	DefaultBackoffMax  = time.Hour
	// DefaultPoll is how often the registry is looked at for new events (Options.Poll).
	DefaultPoll = time.Second
	// DefaultLeaseTTL is the lifetime of an unrenewed delivery lease (Options.LeaseTTL).
	DefaultLeaseTTL = 45 * time.Second
	// DefaultKeepLog is how long delivery log entries are kept (Options.KeepLog).
	DefaultKeepLog = 30 * 24 * time.Hour
)

// Options configure a Deliverer.
type Options struct {
	// URL is the platform URL (http or https, absolute). Required.
	URL string
	// Secret keys the HMAC-SHA256 of X-Atende-Signature. Required.
	Secret string
	// Store is the tenant registry (tenants and their events). Required.
	Store controlplane.Store
	// Webhooks keeps the cursors and the delivery log; default Store, if it implements
	// controlplane.PlatformWebhookStore (mongodb.Store does).
	Webhooks controlplane.PlatformWebhookStore
	// Leases arbitrates the one deliverer among control planes sharing the registry; default
	// Store, if it implements controlplane.LeaseStore (mongodb.Store does).
	Leases controlplane.LeaseStore
	// Owner names this deliverer in the lease; default "<hostname>-<pid>-<random>".
	Owner string
	// Timeout bounds one attempt: connection, request and answer headers (default
	// DefaultTimeout).
	Timeout time.Duration
	// MaxAttempts bounds the attempts per event (default DefaultMaxAttempts).
	MaxAttempts int
	// BackoffBase and BackoffMax shape the waits between attempts (defaults DefaultBackoffBase,
	// DefaultBackoffMax; see webhook.Backoff).
	BackoffBase, BackoffMax time.Duration
	// Poll is the interval between looks at the registry without a Poke (default DefaultPoll).
	Poll time.Duration
	// LeaseTTL is the lifetime of the delivery lease without renewal (default DefaultLeaseTTL,
	// at least 3·Timeout): a crashed deliverer's successor starts within about that long. The
	// lease is renewed before each attempt once a third of it has passed.
	LeaseTTL time.Duration
	// KeepLog is how long delivery log entries are kept (default DefaultKeepLog).
	KeepLog time.Duration
	// Client sends the attempts; default an http.Client that never follows redirects. A given
	// client's CheckRedirect is replaced so redirects are never followed either.
	Client *http.Client
	// Logger receives delivery outcomes and failures (default slog.Default()); the secret and
	// the URL's user:password are never logged.
	Logger *slog.Logger
}

// Deliverer sends the registry's lifecycle events to the platform URL (see the package doc).
type Deliverer struct {
	opts     Options
	store    controlplane.Store
	hooks    controlplane.PlatformWebhookStore
	leases   controlplane.LeaseStore
	client   *http.Client
	log      *slog.Logger
	url      string // redacted, for logs and the delivery log
	wake     chan struct{}
	lease    *controlplane.Lease
	prunedAt time.Time
}

// New validates opts, applies the defaults and returns a deliverer; Run starts it. It returns an
// error naming the problem for a missing or malformed URL, an empty secret, or a Store that keeps
// no cursors or leases when none are given.
func New(opts Options) (*Deliverer, error) {
	u, err := url.Parse(opts.URL)
	switch {
	case opts.URL == "":
		return nil, errors.New("platformhook: URL is required")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Fragment != "":
		return nil, fmt.Errorf("platformhook: URL %q must be an absolute http or https URL", redact(opts.URL))
	case opts.Secret == "":
		return nil, errors.New("platformhook: a secret is required to sign deliveries")
	case opts.Store == nil:
		return nil, errors.New("platformhook: Store is required")
	}
	if opts.Webhooks == nil {
		w, ok := opts.Store.(controlplane.PlatformWebhookStore)
		if !ok {
			return nil, errors.New("platformhook: Webhooks is required (the Store keeps no webhook cursors)")
		}
		opts.Webhooks = w
	}
	if opts.Leases == nil {
		l, ok := opts.Store.(controlplane.LeaseStore)
		if !ok {
			return nil, errors.New("platformhook: Leases is required (the Store keeps no leases)")
		}
		opts.Leases = l
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.BackoffBase <= 0 {
		opts.BackoffBase = DefaultBackoffBase
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = DefaultBackoffMax
	}
	opts.BackoffMax = max(opts.BackoffMax, opts.BackoffBase)
	if opts.Poll <= 0 {
		opts.Poll = DefaultPoll
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = DefaultLeaseTTL
	}
	opts.LeaseTTL = max(opts.LeaseTTL, 3*opts.Timeout)
	if opts.KeepLog <= 0 {
		opts.KeepLog = DefaultKeepLog
	}
	if opts.Owner == "" {
		opts.Owner = defaultOwner()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true,
		MaxIdleConnsPerHost: 2, IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: opts.Timeout}}
	if opts.Client != nil {
		c := *opts.Client
		client = &c
	}
	client.Timeout = opts.Timeout
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Deliverer{opts: opts, store: opts.Store, hooks: opts.Webhooks, leases: opts.Leases, client: client,
		log: opts.Logger, url: redact(opts.URL), wake: make(chan struct{}, 1)}, nil
}

// Poke makes the deliverer look at the registry at once. It never blocks.
func (d *Deliverer) Poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run delivers until ctx ends, then releases the delivery lease (so a successor need not wait
// for it to lapse) and returns ctx.Err(). An attempt in flight when ctx ends does not count and
// is made again later.
func (d *Deliverer) Run(ctx context.Context) error {
	d.log.Info("platform webhooks delivering", "url", d.url, "owner", d.opts.Owner)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if d.lease != nil {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
				_ = d.leases.ReleaseLease(rctx, *d.lease)
				cancel()
				d.lease = nil
			}
			return ctx.Err()
		case <-d.wake:
		case <-t.C:
		}
		if err := d.pass(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("platform webhooks: pass failed", "err", err.Error())
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(d.opts.Poll)
	}
}

// pass sends what is due, tenant by tenant.
func (d *Deliverer) pass(ctx context.Context) error {
	tenants, err := d.store.Tenants(ctx, controlplane.TenantFilter{IncludeDeleted: true})
	if err != nil {
		return err
	}
	cursors, err := d.hooks.WebhookCursors(ctx)
	if err != nil {
		return err
	}
	for _, t := range tenants {
		c, ok := cursors[t.ID]
		if !ok {
			c = controlplane.WebhookCursor{TenantID: t.ID}
		}
		if t.Version <= max(c.Seq, c.Checked) || time.Now().Before(c.NextAt) {
			continue
		}
		if !d.holdLease(ctx) {
			return nil // another control plane delivers; look again at the next pass
		}
		if err := d.deliverTenant(ctx, t, c); err != nil {
			return err
		}
	}
	if time.Since(d.prunedAt) > time.Hour && d.holdLease(ctx) {
		if err := d.hooks.PruneWebhookDeliveries(ctx, time.Now().Add(-d.opts.KeepLog)); err != nil {
			return err
		}
		d.prunedAt = time.Now()
	}
	return nil
}

// deliverTenant sends t's events after cursor c, in order, until one fails (its retry is
// scheduled) or none is left (the cursor then records t.Version as checked).
func (d *Deliverer) deliverTenant(ctx context.Context, t *controlplane.Tenant, c controlplane.WebhookCursor) error {
	events, err := d.store.Events(ctx, t.ID)
	if err != nil {
		return err
	}
	// What an attempt did is recorded even when ctx ends right after it.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for _, ev := range events {
		if ev.Seq <= c.Seq {
			continue
		}
		if ctx.Err() != nil || !d.holdLease(ctx) {
			return nil
		}
		if c.PendingSeq != ev.Seq {
			c.PendingSeq, c.Attempts, c.NextAt = ev.Seq, 0, time.Time{}
		}
		del, ok := d.attempt(ctx, t.Key, ev, c.Attempts+1)
		if !ok && ctx.Err() != nil {
			return nil // stopped mid-attempt: it does not count
		}
		switch {
		case ok:
			del.Outcome = controlplane.DeliveryDelivered
		case del.Attempt >= d.opts.MaxAttempts:
			del.Outcome = controlplane.DeliveryFailed
		default:
			next := time.Now().UTC().Add(webhook.Backoff(del.Attempt, d.opts.BackoffBase, d.opts.BackoffMax, mrand.Float64()))
			del.Outcome, del.NextAttemptAt = controlplane.DeliveryRetrying, &next
			c.Attempts, c.NextAt = del.Attempt, next
		}
		level := slog.LevelInfo
		if !ok {
			level = slog.LevelWarn
		}
		d.log.Log(ctx, level, "platform webhook", "tenantId", t.ID, "key", t.Key, "eventId", del.EventID, "type", del.Type,
			"attempt", del.Attempt, "outcome", del.Outcome, "status", del.StatusCode, "error", del.Error)
		if err := d.hooks.RecordWebhookDelivery(wctx, del); err != nil {
			d.log.Warn("platform webhooks: delivery not logged", "eventId", del.EventID, "err", err.Error())
		}
		if del.Outcome == controlplane.DeliveryRetrying {
			return d.hooks.SaveWebhookCursor(wctx, c)
		}
		c.Seq, c.PendingSeq, c.Attempts, c.NextAt = ev.Seq, 0, 0, time.Time{}
		if err := d.hooks.SaveWebhookCursor(wctx, c); err != nil {
			return err
		}
	}
	if c.Checked < t.Version {
		c.Checked = t.Version
		return d.hooks.SaveWebhookCursor(wctx, c)
	}
	return nil
}

// attempt POSTs ev once and returns the attempt's record (Outcome unset) and whether a 2xx came.
func (d *Deliverer) attempt(ctx context.Context, key string, ev controlplane.Event, n int) (controlplane.LifecycleDelivery, bool) {
	b := NewBody(key, ev)
	start := time.Now().UTC()
	del := controlplane.LifecycleDelivery{ID: b.ID + "#" + strconv.Itoa(n), EventID: b.ID, Type: b.Type, TenantID: ev.TenantID,
		TenantKey: key, Seq: ev.Seq, URL: d.url, Attempt: n, At: start}
	body, err := json.Marshal(b)
	if err != nil {
		del.Error = "encode: " + err.Error()
		return del, false
	}
	ts := strconv.FormatInt(start.Unix(), 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.opts.URL, strings.NewReader(string(body)))
	if err != nil {
		del.Error = "invalid URL"
		return del, false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Atende-Platform-Webhooks/1")
	req.Header.Set(webhook.HeaderEventID, b.ID)
	req.Header.Set(webhook.HeaderEvent, b.Type)
	req.Header.Set(webhook.HeaderTimestamp, ts)
	req.Header.Set(webhook.HeaderSignature, webhook.Sign(d.opts.Secret, ts, body))
	req.Header.Set(webhook.HeaderAttempt, strconv.Itoa(n))
	t0 := time.Now()
	resp, err := d.client.Do(req)
	del.DurationMS = time.Since(t0).Milliseconds()
	if err != nil {
		del.Error = d.describe(err)
		return del, false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	del.StatusCode = resp.StatusCode
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		del.Error = "redirects are not followed"
	}
	return del, resp.StatusCode >= 200 && resp.StatusCode < 300
}

// describe turns a client error into a short message without the URL (which may hold a
// password).
func (d *Deliverer) describe(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("timeout after %s", d.opts.Timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

// holdLease reports whether this deliverer holds the delivery lease for at least the next
// attempt, renewing it once a third of its lifetime has passed or acquiring it when it has none.
func (d *Deliverer) holdLease(ctx context.Context) bool {
	ttl := d.opts.LeaseTTL
	if d.lease != nil && time.Until(d.lease.ExpiresAt) > ttl*2/3 {
		return true
	}
	if d.lease != nil && time.Until(d.lease.ExpiresAt) > d.opts.Timeout {
		l, err := d.leases.RenewLease(ctx, *d.lease, ttl)
		if err == nil {
			d.lease = &l
			return true
		}
		d.log.Warn("platform webhooks: lease not renewed; delivery paused", "err", err.Error())
		d.lease = nil
		return false
	}
	d.lease = nil
	l, err := d.leases.AcquireLease(ctx, LeaseName, d.opts.Owner, ttl)
	if err != nil {
		if controlplane.ErrorCode(err) != controlplane.EConflict && ctx.Err() == nil {
			d.log.Warn("platform webhooks: lease not acquired", "err", err.Error())
		}
		return false
	}
	d.lease = &l
	d.log.Info("platform webhooks: delivery lease acquired", "owner", l.Owner, "fence", l.Fence)
	return true
}
