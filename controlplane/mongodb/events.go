package mongodb

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"atende/controlplane"
)

// Events without transactions (FerretDB v1 has none). A tenant's event is written BEFORE the
// tenant, under the deterministic id "<tenantId>:<seq>" (seq = the tenant's Version after the
// save), with a random nonce and the sequence number and nonce of the tenant's previous event.
// The tenant document then records the sequence number and nonce of its latest event. So:
//
//   - a crash between the two writes loses nothing: the state was not saved, the step that
//     wanted it runs again (the supervisor's steps are idempotent) and its event replaces the
//     left-over one under the same id;
//   - a reader trusts only the chain that starts at the tenant's latest event and follows the
//     previous-event links, so an event written for a save that never happened (a crash, or a
//     compare-and-set lost to a concurrent writer) is ignored, even when a save without an event
//     (a cell address update) later reached its version; events come out in order.

// eventDoc is the stored shape of an event.
type eventDoc struct {
	ID        string    `bson:"_id,omitempty"`
	TenantID  string    `bson:"tenantId"`
	Seq       int64     `bson:"seq"`
	From      string    `bson:"from"`
	To        string    `bson:"to"`
	At        time.Time `bson:"at"`
	Reason    string    `bson:"reason,omitempty"`
	Nonce     string    `bson:"nonce,omitempty"`
	PrevSeq   int64     `bson:"prevSeq,omitempty"`
	PrevNonce string    `bson:"prevNonce,omitempty"`
}

// storedEvent is an event as read back: events stored before they were chained have an ObjectID
// as _id, which is not decoded.
type storedEvent struct {
	TenantID  string    `bson:"tenantId"`
	Seq       int64     `bson:"seq"`
	From      string    `bson:"from"`
	To        string    `bson:"to"`
	At        time.Time `bson:"at"`
	Reason    string    `bson:"reason,omitempty"`
	Nonce     string    `bson:"nonce,omitempty"`
	PrevSeq   int64     `bson:"prevSeq,omitempty"`
	PrevNonce string    `bson:"prevNonce,omitempty"`
}

// EventID returns the _id of a tenant's event with sequence number seq: "<tenantId>:<seq>".
func EventID(tenantID string, seq int64) string { return tenantID + ":" + strconv.FormatInt(seq, 10) }

// newEventDoc returns ev (with its final Seq) as a document with a new nonce, linked to the
// tenant's previous event (prevSeq, prevNonce; zero for none).
func newEventDoc(ev controlplane.Event, prevSeq int64, prevNonce string) eventDoc {
	b := make([]byte, 12)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms.
	return eventDoc{ID: EventID(ev.TenantID, ev.Seq), TenantID: ev.TenantID, Seq: ev.Seq, From: string(ev.From), To: string(ev.To),
		At: ev.At.UTC(), Reason: ev.Reason, Nonce: hex.EncodeToString(b), PrevSeq: prevSeq, PrevNonce: prevNonce}
}

// putEvent writes e under its id, replacing an event left there by a save that did not happen
// (the caller checked that the tenant has not reached e.Seq yet).
func (s *Store) putEvent(ctx context.Context, e eventDoc) error {
	_, err := s.events.InsertOne(ctx, e)
	if err == nil {
		return nil
	}
	if !isDuplicate(err) {
		return fmt.Errorf("mongodb: insert event: %w", err)
	}
	if _, err := s.events.ReplaceOne(ctx, bson.D{{Key: "_id", Value: e.ID}}, e, options.Replace().SetUpsert(true)); err != nil {
		return fmt.Errorf("mongodb: replace left-over event %s: %w", e.ID, err)
	}
	return nil
}

// confirmEvent makes sure the event stored under e.ID is e, whose save has just succeeded.
func (s *Store) confirmEvent(ctx context.Context, e eventDoc) error {
	var got storedEvent
	err := s.events.FindOne(ctx, bson.D{{Key: "_id", Value: e.ID}}).Decode(&got)
	if err == nil && got.Nonce == e.Nonce {
		return nil
	}
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return fmt.Errorf("mongodb: read event %s: %w", e.ID, err)
	}
	if _, err := s.events.ReplaceOne(ctx, bson.D{{Key: "_id", Value: e.ID}}, e, options.Replace().SetUpsert(true)); err != nil {
		return fmt.Errorf("mongodb: restore event %s: %w", e.ID, err)
	}
	return nil
}

// Events implements controlplane.Store: the events on the chain that ends at the tenant's latest
// event, in Seq order. Events of a tenant that does not exist are not shown. For a tenant saved
// before events were chained, or below a link broken by two control planes saving one version of
// a tenant at the same instant, the events up to the tenant's Version are shown unfiltered.
func (s *Store) Events(ctx context.Context, tenantID string) ([]controlplane.Event, error) {
	t, err := s.findDoc(ctx, bson.D{{Key: "_id", Value: tenantID}}, "no tenant with id %q", tenantID)
	if controlplane.ErrorCode(err) == controlplane.ENotFound {
		return []controlplane.Event{}, nil
	}
	if err != nil {
		return nil, err
	}
	cur, err := s.events.Find(ctx, bson.D{{Key: "tenantId", Value: tenantID}})
	if err != nil {
		return nil, fmt.Errorf("mongodb: find events: %w", err)
	}
	var docs []storedEvent
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("mongodb: read events: %w", err)
	}
	return chain(docs, t.Version, t.LastEventSeq, t.LastEventNonce), nil
}

// chain returns the events of docs that belong to the tenant's history: those on the chain of
// previous-event links starting at (lastSeq, lastNonce); below the first chained event, the
// events stored before chaining (no nonce); and, where the chain breaks (an event missing or
// replaced), every event below the break. A tenant without a chained event (lastNonce empty) has
// its unchained events up to version.
func chain(docs []storedEvent, version, lastSeq int64, lastNonce string) []controlplane.Event {
	bySeq := make(map[int64]storedEvent, len(docs))
	for _, d := range docs {
		bySeq[d.Seq] = d
	}
	var kept []storedEvent
	below, broken := version, false // also keep unchained (all, if broken) events up to below
	if seq, nonce := lastSeq, lastNonce; nonce != "" {
		for {
			d, ok := bySeq[seq]
			if !ok || d.Nonce != nonce {
				below, broken = seq-1, true
				break
			}
			kept = append(kept, d)
			if d.PrevNonce == "" || d.PrevSeq >= d.Seq {
				below, broken = d.Seq-1, d.PrevNonce != ""
				break
			}
			seq, nonce = d.PrevSeq, d.PrevNonce
		}
	}
	for _, d := range docs {
		if d.Seq <= below && (d.Nonce == "" || broken) {
			kept = append(kept, d)
		}
	}
	out := make([]controlplane.Event, 0, len(kept))
	for _, d := range kept {
		out = append(out, controlplane.Event{TenantID: d.TenantID, Seq: d.Seq, From: controlplane.State(d.From), To: controlplane.State(d.To), At: d.At.UTC(), Reason: d.Reason})
	}
	slices.SortFunc(out, func(a, b controlplane.Event) int { return cmp.Compare(a.Seq, b.Seq) })
	return out
}
