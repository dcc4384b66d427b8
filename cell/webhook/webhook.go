// Package webhook delivers one tenant's chat events to the HTTP endpoints the tenant-admin
// configured: a persisted outbox in the cell's database, a single delivering Dispatcher per
// database (a lease), signed POSTs with retries, and a delivery log for the admin console.
//
// # Events
//
// The cell service publishes one Event after each state change it has persisted:
//
//	chat.created       a visitor opened a chat (it is queued)
//	chat.accepted      an agent accepted a queued chat
//	chat.transferred   an active chat moved to another agent or department
//	chat.resolved      a chat was closed
//	message.created    a visitor or agent message was stored
//
// The caller never publishes private (agent-only) notes as message.created: the dispatcher cannot
// tell a note from a message and delivers whatever it is given to the tenant's endpoints.
//
// Event ids are chosen by the caller and deterministic, built with EventID from what changed, e.g.
// "message.created:<messageId>", "chat.accepted:<chatId>", "chat.transferred:<chatId>:<n>" (n
// counts the chat's transfers). Publish stores an event once per id: publishing the same id again
// (a retried request, a repair after a crash) stores and delivers nothing new.
//
// # Wiring it into the cell
//
// One Dispatcher per cell process, on the cell's database, with the tenant's webhook settings
// behind a func so an admin's change applies to the next attempt without a restart:
//
//	db := client.Database(cfg.Database) // the cell's database, t_<tenantId>
//	hooks, err := webhook.New(db, cfg.TenantID, func(ctx context.Context) ([]webhook.Endpoint, error) {
//		s := settings.Current() // cached tenant settings, kept fresh by the settings use case
//		return []webhook.Endpoint{{URL: s.WebhookURL, Secret: s.WebhookSecret, Events: s.WebhookEvents}}, nil
//	}, webhook.Options{Logger: log})
//	go hooks.Run(ctx) // delivers while this replica holds the lease; returns when ctx ends
//
// and in the service, after the state change is persisted (never before):
//
//	payload, _ := json.Marshal(struct {
//		ChatID string    `json:"chatId"`
//		Seq    int64     `json:"seq"`
//		From   string    `json:"from"` // "visitor" or "agent"
//		Body   string    `json:"body"`
//		At     time.Time `json:"createdAt"`
//	}{msg.ChatID, msg.Seq, msg.From.Role, msg.Body, msg.CreatedAt})
//	err := hooks.Publish(ctx, webhook.Event{
//		ID: webhook.EventID(webhook.MessageCreated, msg.ID), Type: webhook.MessageCreated,
//		OccurredAt: msg.CreatedAt, Payload: payload,
//	})
//
// The payload is exactly what the caller marshals: build it from an explicit struct (as above),
// never by marshalling a stored document, so no field leaks that was not chosen on purpose. If
// Publish fails after the state change was stored, the service may call it again later with the
// same id (it is idempotent); a failure must not undo the state change.
//
// # What a receiver gets
//
// Each attempt is a POST with Content-Type application/json and the body
//
//	{"id":"message.created:…","type":"message.created","tenantId":"…",
//	 "occurredAt":"2025-01-02T03:04:05.678Z","data":{…the caller's payload…}}
//
// The body is built once, at Publish, and is byte-identical on every retry. Headers:
//
//	X-Atende-Event-Id    the event id (the same on every retry: receivers dedupe by it)
//	X-Atende-Event       the event type
//	X-Atende-Timestamp   the attempt's time, Unix seconds
//	X-Atende-Signature   sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>
//	X-Atende-Attempt     the attempt number, 1 for the first
//
// The signature follows Stripe's scheme (the signed payload is the timestamp, a ".", and the raw
// body; HMAC-SHA256 with the endpoint's secret: https://docs.stripe.com/webhooks#verify-manually)
// written in GitHub's header format ("sha256=" and lowercase hex, as X-Hub-Signature-256:
// https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries). Signing the
// timestamp lets a receiver refuse replays: Verify recomputes the HMAC over the raw body as
// received, compares in constant time and refuses timestamps more than a tolerance (Stripe's
// default is 5 minutes) away from its clock.
//
// A 2xx answer within Options.Timeout (default 5 s) counts as delivered; anything else (another
// status, a redirect, which is never followed, a timeout, a refused connection, an address the
// SSRF guard refuses) is retried with exponential backoff and jitter (Backoff) up to
// Options.MaxAttempts attempts (default 10, spread over about 1.5 to 3 hours), after which the
// event is failed for that endpoint. Delivery is at least once: a crash between a receiver's 2xx
// and the record of it sends the event again, so receivers must dedupe by X-Atende-Event-Id.
//
// Order: due attempts go out one at a time, oldest event first, so first attempts follow the order
// of Publish. An event waiting out its backoff does not hold back newer events (as with Stripe and
// GitHub, a retry can arrive after newer events); receivers that need order use occurredAt.
//
// # Network safety
//
// Endpoint URLs are tenant input, so the dispatcher does not reach internal services (SSRF): it
// resolves the host itself, refuses the attempt if any address is loopback, private, link-local
// (including 169.254.169.254 cloud metadata), CGNAT, multicast, reserved or an IPv6 form that
// embeds one of those, and dials the checked address itself (no second lookup an attacker's DNS
// could answer differently). Proxies from the environment are not used. Options.AllowPrivateNetworks
// turns the check off, for local development and tests only.
//
// # Storage (FerretDB-shaped)
//
// FerretDB v1 only pushes `{_id: <string>}` filters down to SQLite; every other filter scans the
// collection, and updates are read-modify-writes of the whole document. So:
//
//   - webhook_events: one small record per published event, `_id` = event id. It makes Publish
//     idempotent for good (not only while the event is pending) and holds the final Status.
//   - webhook_outbox: only the events still to deliver, `_id` = event id, with the body and the
//     per-endpoint attempt state. Finished events are deleted, so the one scan (when a Dispatcher
//     takes the lease, and every Options.Rescan to see events other replicas published) stays small.
//   - webhook_deliveries: the delivery log, `_id` = "d:<seq, 12 digits>", one document per attempt;
//     the newest Options.KeepDeliveries are kept. Deliveries reads it by point reads from the head.
//   - webhook_state: the lease epochs and the delivery log's head hint.
//
// Only the lease holder updates outbox documents and writes the log, so the read-modify-write
// updates of FerretDB never race there. Every document carries `tenantId`; scans filter on it and
// point reads refuse a document of another tenant.
//
// # One deliverer per database
//
// Replicas of a cell share the database; only the holder of the lease delivers. FerretDB v1 does
// not apply a conditional update atomically: measured while building this package, in 5 rounds of
// 20 concurrent updateOne({_id, version: 1}, {$set: {version: 2}}), 2 to 5 per round reported a
// modification (the handler queries, then rewrites the document by _id unconditionally:
// internal/handler/msg_update.go and internal/backends/sqlite/collection.go in FerretDB v1.24),
// and a two-key filter is not even pushed down (only a filter whose single key is _id is). So the
// lease is arbitrated by inserts against the unique `_id`, which are atomic: the lease is a
// series of epoch documents "lease:<epoch>", and taking over an expired epoch k means inserting
// epoch k+1, which exactly one contender can do. The holder renews its own epoch document (nobody
// else writes it) every Options.LeaseTTL/3, checks after each renewal that no epoch k+1 exists,
// and stops delivering at the end of its last confirmed renewal minus a quarter of the TTL; a new
// holder also waits until the previous epoch's recorded expiry has passed.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// EventType names what happened, as sent in X-Atende-Event and the body's "type".
type EventType string

// The event types a cell publishes.
const (
	// ChatCreated is published when a visitor opens a chat (it enters the queue).
	ChatCreated EventType = "chat.created"
	// ChatAccepted is published when an agent accepts a queued chat (exactly once per chat).
	ChatAccepted EventType = "chat.accepted"
	// ChatTransferred is published when an active chat moves to another agent or department.
	ChatTransferred EventType = "chat.transferred"
	// ChatResolved is published when a chat is closed.
	ChatResolved EventType = "chat.resolved"
	// MessageCreated is published when a visitor or agent message is stored. Private agent notes
	// are never published.
	MessageCreated EventType = "message.created"
)

// EventTypes returns every event type, in the order of the constants above.
func EventTypes() []EventType {
	return []EventType{ChatCreated, ChatAccepted, ChatTransferred, ChatResolved, MessageCreated}
}

// Valid reports whether t is one of the event types above.
func (t EventType) Valid() bool {
	for _, v := range EventTypes() {
		if t == v {
			return true
		}
	}
	return false
}

// Event is one thing that happened in the tenant's cell, to be delivered to its endpoints.
type Event struct {
	// ID is unique and deterministic for what happened (see EventID): 1 to 200 characters of
	// letters, digits and "_.:-". Publishing an ID again stores nothing.
	ID string
	// Type is one of the EventType constants.
	Type EventType
	// TenantID is the tenant's id; empty means the Dispatcher's tenant, another tenant's id is
	// refused.
	TenantID string
	// OccurredAt is when the change happened (zero means the time of Publish). It is sent in UTC
	// with millisecond precision.
	OccurredAt time.Time
	// Payload is the event's data: a JSON object (or empty, sent as {}), at most MaxPayloadBytes.
	// It is sent as the body's "data" exactly as given, whitespace removed.
	Payload json.RawMessage
}

// MaxPayloadBytes is the largest Event.Payload Publish accepts, in bytes (256 KiB).
const MaxPayloadBytes = 256 << 10

// eventIDPattern is what an event id may look like: safe in a header and in an `_id`.
var eventIDPattern = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,200}$`)

// EventID returns the deterministic id of an event of type t about subject, joined with ":",
// e.g. EventID(MessageCreated, "c1:000000000007") = "message.created:c1:000000000007".
func EventID(t EventType, subject ...string) string {
	return strings.Join(append([]string{string(t)}, subject...), ":")
}

// Endpoint is one receiver of a tenant's webhooks, as configured by its tenant-admin.
type Endpoint struct {
	// URL receives the POSTs: an absolute http or https URL.
	URL string
	// Secret is the HMAC-SHA256 key of X-Atende-Signature. An endpoint without one is never
	// called: each due attempt is logged as failed with an "invalid endpoint" error.
	Secret string
	// Events lists the event types the endpoint receives; an empty list receives none.
	Events []EventType
}

// Wants reports whether the endpoint receives events of type t.
func (e Endpoint) Wants(t EventType) bool {
	for _, v := range e.Events {
		if v == t {
			return true
		}
	}
	return false
}

// check returns why the endpoint cannot be called, or nil.
func (e Endpoint) check() error {
	u, err := url.Parse(e.URL)
	switch {
	case err != nil:
		return fmt.Errorf("invalid endpoint: url: %w", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("invalid endpoint: url scheme must be http or https")
	case u.Hostname() == "":
		return errors.New("invalid endpoint: url has no host")
	case e.Secret == "":
		return errors.New("invalid endpoint: no secret")
	}
	return nil
}

// Header names of every delivery attempt.
const (
	// HeaderEventID carries Event.ID, the same on every retry.
	HeaderEventID = "X-Atende-Event-Id"
	// HeaderEvent carries Event.Type.
	HeaderEvent = "X-Atende-Event"
	// HeaderTimestamp carries the attempt's time in Unix seconds, the one signed.
	HeaderTimestamp = "X-Atende-Timestamp"
	// HeaderSignature carries Sign(secret, timestamp, body).
	HeaderSignature = "X-Atende-Signature"
	// HeaderAttempt carries the attempt number, starting at 1.
	HeaderAttempt = "X-Atende-Attempt"
)

// Sign returns the X-Atende-Signature value of body sent at timestamp (Unix seconds, as in
// X-Atende-Timestamp): "sha256=" followed by the lowercase hex HMAC-SHA256, keyed with secret, of
// timestamp + "." + body (Stripe's signed payload in GitHub's header format, see the package doc).
func Sign(secret, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(timestamp))
	mac.Write([]byte("."))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// ErrSignature is returned by Verify when the signature does not match or is malformed.
var ErrSignature = errors.New("webhook: signature mismatch")

// ErrTimestamp is returned by Verify when the timestamp is malformed or further than the
// tolerance from now (a replay or a badly set clock).
var ErrTimestamp = errors.New("webhook: timestamp outside tolerance")

// Verify checks a delivery the way a receiver should, given the X-Atende-Timestamp and
// X-Atende-Signature headers and the raw body as received (before any JSON decoding): the
// signature must equal Sign(secret, timestamp, body) (compared in constant time) and the
// timestamp must be within tolerance of now (5 minutes is Stripe's default). It returns nil,
// ErrSignature or ErrTimestamp. Receivers then dedupe by X-Atende-Event-Id.
func Verify(secret, timestamp, signature string, body []byte, tolerance time.Duration, now time.Time) error {
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return ErrTimestamp
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return ErrTimestamp
	}
	if !hmac.Equal([]byte(signature), []byte(Sign(secret, timestamp, body))) {
		return ErrSignature
	}
	return nil
}

// Backoff returns how long to wait after failed attempt number attempt (1 for the first) before
// the next one: the exponential step base·2^(attempt-1), capped at max, with "equal jitter"
// (Marc Brooker, "Exponential Backoff And Jitter", AWS Architecture Blog, 2015,
// https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/): half the step plus
// jitter (in [0, 1)) times the other half, so retries of many events spread out yet never come
// sooner than half the step. With the defaults (base 30 s, max 1 h) the nine waits between ten
// attempts add up to between 1.5 and 3.1 hours.
func Backoff(attempt int, base, max time.Duration, jitter float64) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	step := float64(base) * math.Pow(2, float64(attempt-1))
	if step > float64(max) || math.IsInf(step, 0) {
		step = float64(max)
	}
	jitter = math.Min(math.Max(jitter, 0), 1)
	return time.Duration(step/2 + jitter*step/2)
}

// Status is where a published event is in its delivery.
type Status string

// Event statuses.
const (
	// StatusPending means the event is in the outbox, waiting for (more) attempts.
	StatusPending Status = "pending"
	// StatusDelivered means every endpoint that wanted the event answered 2xx.
	StatusDelivered Status = "delivered"
	// StatusFailed means at least one endpoint still failed after Options.MaxAttempts attempts.
	StatusFailed Status = "failed"
	// StatusDropped means no endpoint wanted the event any more when it came up for delivery
	// (the tenant changed its settings after Publish).
	StatusDropped Status = "dropped"
)

// Delivery outcomes recorded per attempt.
const (
	// OutcomeDelivered is an attempt answered with a 2xx status.
	OutcomeDelivered = "delivered"
	// OutcomeRetrying is a failed attempt that will be retried at NextAttemptAt.
	OutcomeRetrying = "retrying"
	// OutcomeFailed is a failed last attempt: the event is failed for that endpoint.
	OutcomeFailed = "failed"
)

// Delivery is one attempt to deliver an event to one endpoint, as listed to tenant-admins.
type Delivery struct {
	// Seq is the attempt's position in the tenant's delivery log (1, 2, 3 …); pass the last Seq
	// of a page as Deliveries' before to get the next, older page.
	Seq int64 `json:"seq" bson:"seq"`
	// EventID and Type identify the event delivered.
	EventID string    `json:"eventId" bson:"eventId"`
	Type    EventType `json:"type" bson:"type"`
	// URL is the endpoint's URL, without any user:password part.
	URL string `json:"url" bson:"url"`
	// StatusCode is the HTTP status answered, 0 when there was no answer (see Error).
	StatusCode int `json:"statusCode,omitempty" bson:"statusCode,omitempty"`
	// Error says why no answer came (timeout, refused, blocked address, invalid endpoint); empty
	// when there was an answer.
	Error string `json:"error,omitempty" bson:"error,omitempty"`
	// DurationMS is how long the attempt took, in milliseconds.
	DurationMS int64 `json:"durationMs" bson:"durationMs"`
	// Attempt is the attempt number for this event and endpoint, starting at 1.
	Attempt int `json:"attempt" bson:"attempt"`
	// At is when the attempt started (UTC).
	At time.Time `json:"at" bson:"at"`
	// Outcome is OutcomeDelivered, OutcomeRetrying or OutcomeFailed.
	Outcome string `json:"outcome" bson:"outcome"`
	// NextAttemptAt is when the next attempt is due, set only when Outcome is OutcomeRetrying.
	NextAttemptAt *time.Time `json:"nextAttemptAt,omitempty" bson:"nextAttemptAt,omitempty"`
}

// Log attribute keys.
const (
	logEventID = "eventId"
	logError   = "error"
	logHolder  = "holder"
	logEpoch   = "epoch"
)

// redactURL returns raw without its user:password part (safe to log and to show).
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid url)"
	}
	u.User = nil
	return u.String()
}

// is2xx reports whether an HTTP status means delivered.
func is2xx(code int) bool { return code >= http.StatusOK && code < http.StatusMultipleChoices }
