package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"atende/cell"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestSignatureVerifiesWithIndependentHMAC checks the wire format against an HMAC-SHA256
// computed here with the standard library, not with Sign.
func TestSignatureVerifiesWithIndependentHMAC(t *testing.T) {
	db, tenant := newDB(t)
	rcv := newReceiver(t, always(200))
	const secret = "whsec_test_0123456789"
	d := newDispatcher(t, db, tenant, staticEndpoints(rcv.srv.URL+"/hook", secret), fastOptions())
	run(t, d)
	publish(t, d, "chat.created:c1", ChatCreated, map[string]string{"chatId": "c1"})
	waitFor(t, 5*time.Second, "one delivery", func() bool { return rcv.count() == 1 })

	h := rcv.all()[0]
	ts := h.header.Get("X-Atende-Timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > time.Minute {
		t.Fatalf("X-Atende-Timestamp = %q, want the current Unix time in seconds", ts)
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "." + string(h.body)))
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if got := h.header.Get("X-Atende-Signature"); got != want {
		t.Fatalf("X-Atende-Signature = %q, want %q", got, want)
	}
	for name, want := range map[string]string{
		"X-Atende-Event-Id": "chat.created:c1", "X-Atende-Event": "chat.created",
		"Content-Type": "application/json", "X-Atende-Attempt": "1",
	} {
		if got := h.header.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}

	// Verify, as a receiver would use it.
	now := time.Unix(sec, 0)
	sig := h.header.Get("X-Atende-Signature")
	tampered := append([]byte(nil), h.body...)
	tampered[len(tampered)-2] = ' '
	for _, c := range []struct {
		name            string
		secret, ts, sig string
		body            []byte
		now             time.Time
		want            error
	}{
		{"valid", secret, ts, sig, h.body, now, nil},
		{"valid within tolerance", secret, ts, sig, h.body, now.Add(4 * time.Minute), nil},
		{"wrong secret", "other", ts, sig, h.body, now, ErrSignature},
		{"body changed", secret, ts, sig, tampered, now, ErrSignature},
		{"timestamp changed", secret, strconv.FormatInt(sec+1, 10), sig, h.body, now, ErrSignature},
		{"replayed later", secret, ts, sig, h.body, now.Add(6 * time.Minute), ErrTimestamp},
		{"timestamp not a number", secret, "x", sig, h.body, now, ErrTimestamp},
		{"signature without prefix", secret, ts, strings.TrimPrefix(sig, "sha256="), h.body, now, ErrSignature},
	} {
		if err := Verify(c.secret, c.ts, c.sig, c.body, 5*time.Minute, c.now); !errors.Is(err, c.want) {
			t.Errorf("%s: Verify = %v, want %v", c.name, err, c.want)
		}
	}
}

// TestRetryReusesEventID: two 500s, then a 200. Every attempt carries the same event id and the
// same body, the waits follow the backoff, and the log records all three attempts.
func TestRetryReusesEventID(t *testing.T) {
	db, tenant := newDB(t)
	rcv := newReceiver(t, func(n int) int {
		if n <= 2 {
			return 500
		}
		return 204
	})
	opts := fastOptions()
	opts.BackoffBase, opts.BackoffMax = 60*time.Millisecond, time.Second
	d := newDispatcher(t, db, tenant, staticEndpoints(rcv.srv.URL, "s"), opts)
	run(t, d)
	id := EventID(MessageCreated, "c1:000000000001")
	publish(t, d, id, MessageCreated, map[string]any{"chatId": "c1", "seq": 1, "body": "hello"})
	waitFor(t, 5*time.Second, "delivered", func() bool {
		s, _ := d.Status(context.Background(), id)
		return s == StatusDelivered
	})

	hits := rcv.all()
	if len(hits) != 3 {
		t.Fatalf("receiver got %d requests, want 3", len(hits))
	}
	for i, h := range hits {
		if got := h.header.Get(HeaderEventID); got != id {
			t.Errorf("attempt %d: event id %q, want %q", i+1, got, id)
		}
		if got := h.header.Get(HeaderAttempt); got != strconv.Itoa(i+1) {
			t.Errorf("attempt %d: X-Atende-Attempt %q", i+1, got)
		}
		if string(h.body) != string(hits[0].body) {
			t.Errorf("attempt %d: body differs from the first attempt's", i+1)
		}
		if i > 0 {
			// Equal jitter: never sooner than half the exponential step.
			if gap, min := h.at.Sub(hits[i-1].at), Backoff(i, opts.BackoffBase, opts.BackoffMax, 0); gap < min {
				t.Errorf("attempt %d came %s after the previous one, want at least %s", i+1, gap, min)
			}
		}
	}
	// The status is recorded first, then the event leaves the outbox.
	waitFor(t, 2*time.Second, "empty outbox", func() bool { return pending(t, d) == 0 })

	log, err := d.Deliveries(context.Background(), 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != 3 {
		t.Fatalf("Deliveries returned %d entries, want 3: %+v", len(log), log)
	}
	for i, want := range []struct {
		seq     int64
		attempt int
		status  int
		outcome string
	}{{3, 3, 204, OutcomeDelivered}, {2, 2, 500, OutcomeRetrying}, {1, 1, 500, OutcomeRetrying}} {
		got := log[i]
		if got.Seq != want.seq || got.Attempt != want.attempt || got.StatusCode != want.status || got.Outcome != want.outcome ||
			got.EventID != id || got.Type != MessageCreated || got.URL != rcv.srv.URL || got.Error != "" {
			t.Errorf("entry %d = %+v, want seq %d attempt %d status %d outcome %s", i, got, want.seq, want.attempt, want.status, want.outcome)
		}
		if got.DurationMS < 0 || got.DurationMS > 300 || got.At.IsZero() || time.Since(got.At) > time.Minute {
			t.Errorf("entry %d: duration %d ms at %s", i, got.DurationMS, got.At)
		}
		if (got.Outcome == OutcomeRetrying) != (got.NextAttemptAt != nil) {
			t.Errorf("entry %d: outcome %s with nextAttemptAt %v", i, got.Outcome, got.NextAttemptAt)
		}
	}
	if na := log[2].NextAttemptAt; na != nil && (na.Before(log[2].At) || na.After(log[1].At.Add(50*time.Millisecond))) {
		t.Errorf("first retry planned at %s, but it ran at %s", na, log[1].At)
	}
}

// TestPublishIsIdempotent: the same id published twice (even with another payload) is stored and
// delivered once, before and after its delivery.
func TestPublishIsIdempotent(t *testing.T) {
	db, tenant := newDB(t)
	rcv := newReceiver(t, always(200))
	d := newDispatcher(t, db, tenant, staticEndpoints(rcv.srv.URL, "s"), fastOptions())
	id := EventID(ChatAccepted, "c9")
	publish(t, d, id, ChatAccepted, map[string]string{"agentId": "a1"})
	publish(t, d, id, ChatAccepted, map[string]string{"agentId": "a2"})
	if n := pending(t, d); n != 1 {
		t.Fatalf("Pending = %d after publishing one id twice, want 1", n)
	}
	run(t, d)
	waitFor(t, 5*time.Second, "delivered", func() bool { return rcv.count() == 1 && pending(t, d) == 0 })
	publish(t, d, id, ChatAccepted, map[string]string{"agentId": "a3"})
	if n := pending(t, d); n != 0 {
		t.Fatalf("Pending = %d after republishing a delivered id, want 0", n)
	}
	time.Sleep(300 * time.Millisecond) // longer than a rescan
	if n := rcv.count(); n != 1 {
		t.Fatalf("receiver got %d requests, want 1", n)
	}
	var body struct {
		Data struct {
			AgentID string `json:"agentId"`
		} `json:"data"`
	}
	if err := json.Unmarshal(rcv.all()[0].body, &body); err != nil || body.Data.AgentID != "a1" {
		t.Fatalf("delivered %s (%v), want the first payload", rcv.all()[0].body, err)
	}
}

// TestRestartDeliversPending: events published by a Dispatcher that then stopped (without ever
// delivering) are delivered, in Publish order, by a new Dispatcher on the same database.
func TestRestartDeliversPending(t *testing.T) {
	db, tenant := newDB(t)
	rcv := newReceiver(t, always(200))
	eps := staticEndpoints(rcv.srv.URL, "s")
	first := newDispatcher(t, db, tenant, eps, fastOptions())
	var ids []string
	for i := 1; i <= 5; i++ {
		id := EventID(MessageCreated, fmt.Sprintf("c1:%012d", i))
		ids = append(ids, id)
		publish(t, first, id, MessageCreated, map[string]int{"seq": i})
	}
	if n := pending(t, first); n != 5 {
		t.Fatalf("Pending = %d, want 5", n)
	}

	second := newDispatcher(t, db, tenant, eps, fastOptions())
	run(t, second)
	waitFor(t, 5*time.Second, "five deliveries", func() bool { return rcv.count() == 5 })
	var got []string
	for _, h := range rcv.all() {
		got = append(got, h.header.Get(HeaderEventID))
	}
	if !reflect.DeepEqual(got, ids) {
		t.Fatalf("delivered %v, want %v (Publish order)", got, ids)
	}
	waitFor(t, 2*time.Second, "empty outbox", func() bool { return pending(t, second) == 0 })
}

// TestCrashedHolderIsTakenOver: a Dispatcher that took the lease and died (never renews, never
// releases) holds delivery back only until its lease expires.
func TestCrashedHolderIsTakenOver(t *testing.T) {
	db, tenant := newDB(t)
	rcv := newReceiver(t, always(200))
	eps := staticEndpoints(rcv.srv.URL, "s")
	opts := fastOptions()
	crashed := newDispatcher(t, db, tenant, eps, opts)
	l, _, _, err := crashed.acquire(context.Background())
	if err != nil || l == nil {
		t.Fatalf("acquire: %v, %v", l, err)
	}
	publish(t, crashed, "chat.resolved:c1", ChatResolved, map[string]string{"chatId": "c1"})

	successor := newDispatcher(t, db, tenant, eps, opts)
	start := time.Now()
	run(t, successor)
	waitFor(t, 5*time.Second, "delivery by the successor", func() bool { return rcv.count() == 1 })
	// The crashed lease ran for LeaseTTL from acquire; the successor waits a margin past it.
	if took := time.Since(start); took < opts.LeaseTTL/2 {
		t.Fatalf("delivered %s after the successor started, before the crashed holder's lease expired", took)
	}
}

// TestOneDelivererPerDatabase: two Dispatchers (two replicas of one cell) run on one database and
// both publish; every event is delivered exactly once, and when the holder stops the other one
// takes over.
func TestOneDelivererPerDatabase(t *testing.T) {
	db, tenant := newDB(t)
	rcv := newReceiver(t, always(200))
	eps := staticEndpoints(rcv.srv.URL, "s")
	a := newDispatcher(t, db, tenant, eps, fastOptions())
	b := newDispatcher(t, db, tenant, eps, fastOptions())
	stopA, stopB := run(t, a), run(t, b)
	for i := 0; i < 20; i++ {
		pub := a
		if i%2 == 1 {
			pub = b
		}
		publish(t, pub, EventID(MessageCreated, "c1", strconv.Itoa(i)), MessageCreated, map[string]int{"i": i})
	}
	waitFor(t, 10*time.Second, "20 deliveries", func() bool { return rcv.count() >= 20 })

	_, holder, err := a.latestEpoch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	stopHolder, other := stopA, b
	if holder.Holder == b.opts.Holder {
		stopHolder, other = stopB, a
	}
	stopHolder()
	for i := 20; i < 25; i++ {
		publish(t, other, EventID(MessageCreated, "c1", strconv.Itoa(i)), MessageCreated, map[string]int{"i": i})
	}
	waitFor(t, 10*time.Second, "25 deliveries", func() bool { return rcv.count() >= 25 })
	time.Sleep(300 * time.Millisecond)

	seen := map[string]int{}
	for _, h := range rcv.all() {
		seen[h.header.Get(HeaderEventID)]++
	}
	if len(seen) != 25 {
		t.Fatalf("delivered %d distinct events, want 25", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s delivered %d times", id, n)
		}
	}
}

// TestLeaseHasOneWinner: ten Dispatchers race for a free lease, then for an expired one (the
// former holder among them, renewing its own epoch). A race on a free lease has exactly one
// winner; in every race the winners' delivery windows [activeAt, validUntil] never overlap, and
// the losers cannot take the lease while it is live. Inserts against the unique _id arbitrate;
// FerretDB's conditional updates would not.
func TestLeaseHasOneWinner(t *testing.T) {
	db, tenant := newDB(t)
	opts := fastOptions()
	opts.Timeout, opts.LeaseTTL = 100*time.Millisecond, 800*time.Millisecond
	var ds []*Dispatcher
	for i := 0; i < 10; i++ {
		o := opts
		o.Holder = fmt.Sprintf("replica-%d", i)
		ds = append(ds, newDispatcher(t, db, tenant, staticEndpoints("http://x", "s"), o))
	}
	type window struct {
		holder   string
		from, to time.Time
	}
	for round := 1; round <= 2; round++ {
		var mu sync.Mutex
		var wins []window
		losers := map[*Dispatcher]bool{}
		var wg sync.WaitGroup
		start := time.Now()
		for _, d := range ds {
			wg.Add(1)
			go func() {
				defer wg.Done()
				l, activeAt, _, err := d.acquire(context.Background())
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				defer mu.Unlock()
				if l == nil {
					losers[d] = true
					return
				}
				from := time.Now()
				if wait := time.Until(activeAt); wait > 0 {
					from = from.Add(wait)
				}
				l.mu.Lock()
				wins = append(wins, window{d.opts.Holder, from, l.validUntil})
				l.mu.Unlock()
			}()
		}
		wg.Wait()
		// A race slower than the lease (a loaded machine) may legitimately see it expire and be
		// taken again; a quick one must have one winner.
		quick := time.Since(start) < opts.LeaseTTL/2
		if len(wins) == 0 || round == 1 && quick && len(wins) != 1 {
			t.Fatalf("round %d: winners %v", round, wins)
		}
		earliestEnd := wins[0].to
		for i := range wins {
			earliestEnd = minTime(earliestEnd, wins[i].to)
			for j := i + 1; j < len(wins); j++ {
				a, b := wins[i], wins[j]
				if a.from.Before(b.to) && b.from.Before(a.to) {
					t.Fatalf("round %d: %s and %s both deliver between %s and %s", round, a.holder, b.holder,
						maxTime(a.from, b.from).Format("15:04:05.000"), minTime(a.to, b.to).Format("15:04:05.000"))
				}
			}
		}
		t.Logf("round %d: %d lease(s) handed out in %s, windows disjoint", round, len(wins), time.Since(start))
		// The losers try again while the lease is live (nobody renews it here), and lose again.
		for d := range losers {
			l, _, wait, _ := d.acquire(context.Background())
			if time.Now().After(earliestEnd) {
				break // too slow to tell: the lease may have expired meanwhile
			}
			if l != nil || wait <= 0 {
				t.Fatalf("round %d: %s took a live lease (wait %s)", round, d.opts.Holder, wait)
			}
		}
		time.Sleep(opts.LeaseTTL + opts.LeaseTTL/2) // let it expire
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// TestLeaseRenewalSeesTakeover: once a newer epoch exists, the former holder's renewal fails and
// its lease is no longer valid.
func TestLeaseRenewalSeesTakeover(t *testing.T) {
	db, tenant := newDB(t)
	opts := fastOptions()
	opts.Timeout, opts.LeaseTTL = 100*time.Millisecond, 300*time.Millisecond
	a := newDispatcher(t, db, tenant, staticEndpoints("http://x", "s"), opts)
	b := newDispatcher(t, db, tenant, staticEndpoints("http://x", "s"), opts)
	la, _, _, err := a.acquire(context.Background())
	if err != nil || la == nil {
		t.Fatal("a did not get the free lease", err)
	}
	if err := a.renew(context.Background(), la); err != nil || !la.valid() {
		t.Fatalf("renew of a live lease: %v (valid %v)", err, la.valid())
	}
	time.Sleep(opts.LeaseTTL + opts.LeaseTTL/4 + 50*time.Millisecond)
	lb, _, _, err := b.acquire(context.Background())
	if err != nil || lb == nil {
		t.Fatal("b did not take over the expired lease", err)
	}
	if err := a.renew(context.Background(), la); !errors.Is(err, errLeaseLost) || la.valid() {
		t.Fatalf("renew after takeover: %v (valid %v), want errLeaseLost", err, la.valid())
	}
}

// TestBackoffSchedule checks the pure schedule and the default spread over hours.
func TestBackoffSchedule(t *testing.T) {
	base, cap := 30*time.Second, time.Hour
	for _, c := range []struct {
		attempt int
		jitter  float64
		want    time.Duration
	}{
		{1, 0, 15 * time.Second}, {1, 1, 30 * time.Second}, {1, 0.5, 22500 * time.Millisecond},
		{2, 0, 30 * time.Second}, {2, 1, time.Minute},
		{5, 0, 4 * time.Minute}, {5, 1, 8 * time.Minute},
		{7, 0, 16 * time.Minute}, {7, 1, 32 * time.Minute},
		{8, 0, 30 * time.Minute}, {8, 1, time.Hour}, // 30 s·2^7 = 64 min, capped at 60
		{9, 0, 30 * time.Minute}, {9, 1, time.Hour},
		{200, 1, time.Hour}, {0, 1, 30 * time.Second}, {1, 7, 30 * time.Second}, {1, -1, 15 * time.Second},
	} {
		if got := Backoff(c.attempt, base, cap, c.jitter); got != c.want {
			t.Errorf("Backoff(%d, jitter %.1f) = %s, want %s", c.attempt, c.jitter, got, c.want)
		}
	}
	// The waits between the default 10 attempts: each within [step/2, step], growing, in total
	// "about hours".
	var lo, hi time.Duration
	for n := 1; n < DefaultMaxAttempts; n++ {
		lo += Backoff(n, DefaultBackoffBase, DefaultBackoffMax, 0)
		hi += Backoff(n, DefaultBackoffBase, DefaultBackoffMax, 1)
		if Backoff(n+1, DefaultBackoffBase, DefaultBackoffMax, 0) < Backoff(n, DefaultBackoffBase, DefaultBackoffMax, 0) {
			t.Errorf("backoff shrinks after attempt %d", n)
		}
	}
	if lo < 90*time.Minute || hi > 190*time.Minute {
		t.Errorf("default schedule spans %s to %s, want about 1.5 to 3 hours", lo, hi)
	}
}

// TestMaxAttemptsThenFailed: an endpoint that always fails gets MaxAttempts attempts; then the
// event is failed and leaves the outbox.
func TestMaxAttemptsThenFailed(t *testing.T) {
	db, tenant := newDB(t)
	rcv := newReceiver(t, always(503))
	opts := fastOptions()
	opts.MaxAttempts = 3
	d := newDispatcher(t, db, tenant, staticEndpoints(rcv.srv.URL, "s"), opts)
	run(t, d)
	publish(t, d, "chat.transferred:c1:1", ChatTransferred, map[string]string{"toAgentId": "a2"})
	waitFor(t, 5*time.Second, "failed", func() bool {
		s, _ := d.Status(context.Background(), "chat.transferred:c1:1")
		return s == StatusFailed
	})
	time.Sleep(300 * time.Millisecond)
	if n := rcv.count(); n != 3 {
		t.Fatalf("receiver got %d attempts, want 3", n)
	}
	if n := pending(t, d); n != 0 {
		t.Fatalf("Pending = %d, want 0", n)
	}
	log, err := d.Deliveries(context.Background(), 10, 0)
	if err != nil || len(log) != 3 {
		t.Fatalf("Deliveries: %d entries, %v", len(log), err)
	}
	if log[0].Outcome != OutcomeFailed || log[0].Attempt != 3 || log[0].StatusCode != 503 || log[0].NextAttemptAt != nil {
		t.Fatalf("last entry %+v, want attempt 3 failed with 503", log[0])
	}
}

// TestSSRFDeniedByDefault: without AllowPrivateNetworks, loopback endpoints (by address or by a
// name resolving to one) are never called; the attempts are logged as blocked.
func TestSSRFDeniedByDefault(t *testing.T) {
	db, tenant := newDB(t)
	rcv := newReceiver(t, always(200))
	port := rcv.srv.URL[strings.LastIndex(rcv.srv.URL, ":")+1:]
	urls := []string{rcv.srv.URL + "/ip", "http://localhost:" + port + "/name", "http://[::ffff:127.0.0.1]:" + port + "/mapped"}
	eps := func(context.Context) ([]Endpoint, error) {
		var out []Endpoint
		for _, u := range urls {
			out = append(out, Endpoint{URL: u, Secret: "s", Events: []EventType{ChatCreated}})
		}
		return out, nil
	}
	opts := fastOptions()
	opts.AllowPrivateNetworks = false
	opts.MaxAttempts = 1
	d := newDispatcher(t, db, tenant, eps, opts)
	run(t, d)
	publish(t, d, "chat.created:c1", ChatCreated, map[string]string{})
	waitFor(t, 5*time.Second, "failed", func() bool {
		s, _ := d.Status(context.Background(), "chat.created:c1")
		return s == StatusFailed
	})
	if n := rcv.count(); n != 0 {
		t.Fatalf("receiver on loopback got %d requests, want 0", n)
	}
	log, err := d.Deliveries(context.Background(), 10, 0)
	if err != nil || len(log) != len(urls) {
		t.Fatalf("Deliveries: %+v, %v", log, err)
	}
	t.Logf("logged: %s", log[0].Error)
	for _, e := range log {
		if e.StatusCode != 0 || !strings.Contains(e.Error, "not allowed") || e.Outcome != OutcomeFailed {
			t.Errorf("attempt to %s: %+v, want blocked", e.URL, e)
		}
	}
}

// TestPublicAddr is the SSRF guard's table.
func TestPublicAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"8.8.8.8": true, "1.1.1.1": true, "2606:4700:4700::1111": true, "93.184.216.34": true,
		"127.0.0.1": false, "127.8.9.1": false, "::1": false, "0.0.0.0": false, "::": false,
		"10.1.2.3": false, "172.16.0.1": false, "172.31.255.255": false, "192.168.1.1": false,
		"169.254.169.254": false, "fe80::1": false, "fd00::1": false, "fc00::1": false,
		"100.64.0.1": false, "192.0.0.8": false, "198.18.0.1": false, "240.0.0.1": false,
		"255.255.255.255": false, "224.0.0.1": false, "ff02::1": false,
		"::ffff:127.0.0.1": false, "::ffff:10.0.0.1": false, "::ffff:8.8.8.8": true,
		"64:ff9b::a00:1": false, "2002:7f00:1::": false, "2001:db8::1": false,
		"172.32.0.1": true, "100.128.0.1": true,
	} {
		if got := PublicAddr(netip.MustParseAddr(addr)); got != want {
			t.Errorf("PublicAddr(%s) = %v, want %v", addr, got, want)
		}
	}
}

// TestPayloadIsExactlyTheCallers: the body is the envelope plus the caller's payload, nothing
// else; stored fields (tenantId, targets, _id …) never leak into it.
func TestPayloadIsExactlyTheCallers(t *testing.T) {
	db, tenant := newDB(t)
	rcv := newReceiver(t, always(200))
	d := newDispatcher(t, db, tenant, staticEndpoints(rcv.srv.URL, "s"), fastOptions())
	run(t, d)
	type payload struct {
		ChatID string `json:"chatId"`
		Body   string `json:"body"`
	}
	at := time.Date(2025, 3, 4, 5, 6, 7, 891_234_567, time.FixedZone("x", 3600))
	raw := []byte(" {\n \"chatId\": \"c1\",\n \"body\": \"<b>hi</b> & \\u00e9\"\n} ")
	if err := d.Publish(context.Background(), Event{ID: "message.created:c1:000000000001", Type: MessageCreated,
		TenantID: tenant, OccurredAt: at, Payload: raw}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "delivery", func() bool { return rcv.count() == 1 })
	body := rcv.all()[0].body
	want := `{"id":"message.created:c1:000000000001","type":"message.created","tenantId":"` + tenant +
		`","occurredAt":"2025-03-04T04:06:07.891Z","data":{"chatId":"c1","body":"<b>hi</b> & \u00e9"}}`
	if string(body) != want {
		t.Fatalf("body\n%s\nwant\n%s", body, want)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range top {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if !reflect.DeepEqual(keys, []string{"data", "id", "occurredAt", "tenantId", "type"}) {
		t.Fatalf("envelope keys %v", keys)
	}
	var data map[string]any
	_ = json.Unmarshal(top["data"], &data)
	if !reflect.DeepEqual(data, map[string]any{"chatId": "c1", "body": "<b>hi</b> & é"}) {
		t.Fatalf("data %v, want exactly the caller's fields", data)
	}
	var p payload
	if err := json.Unmarshal(top["data"], &p); err != nil || p.ChatID != "c1" {
		t.Fatalf("data does not decode as the caller's type: %v", err)
	}
}

// TestPublishValidation: malformed events are refused as invalid and store nothing; an event no
// endpoint wants is accepted and stores nothing.
func TestPublishValidation(t *testing.T) {
	db, tenant := newDB(t)
	eps := func(context.Context) ([]Endpoint, error) {
		return []Endpoint{{URL: "http://x", Secret: "s", Events: []EventType{ChatCreated}}}, nil
	}
	d := newDispatcher(t, db, tenant, eps, fastOptions())
	big := []byte(`{"x":"` + strings.Repeat("a", MaxPayloadBytes) + `"}`)
	for _, c := range []struct {
		name string
		e    Event
	}{
		{"empty id", Event{Type: ChatCreated}},
		{"id with $", Event{ID: "chat.created:$x", Type: ChatCreated}},
		{"id too long", Event{ID: strings.Repeat("a", 201), Type: ChatCreated}},
		{"unknown type", Event{ID: "x", Type: "chat.deleted"}},
		{"other tenant", Event{ID: "x", Type: ChatCreated, TenantID: "other"}},
		{"payload array", Event{ID: "x", Type: ChatCreated, Payload: []byte(`[1]`)}},
		{"payload not json", Event{ID: "x", Type: ChatCreated, Payload: []byte(`{"a":`)}},
		{"payload too big", Event{ID: "x", Type: ChatCreated, Payload: big}},
	} {
		if err := d.Publish(context.Background(), c.e); cell.ErrorCode(err) != cell.EInvalid {
			t.Errorf("%s: Publish = %v, want invalid", c.name, err)
		}
	}
	// Not subscribed: accepted, nothing stored.
	if err := d.Publish(context.Background(), Event{ID: "chat.resolved:c1", Type: ChatResolved}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Status(context.Background(), "chat.resolved:c1"); cell.ErrorCode(err) != cell.ENotFound {
		t.Fatalf("Status of an unsubscribed event: %v, want not found", err)
	}
	if n := pending(t, d); n != 0 {
		t.Fatalf("Pending = %d, want 0", n)
	}
	// An empty payload is sent as {}.
	if err := d.Publish(context.Background(), Event{ID: "chat.created:c1", Type: ChatCreated}); err != nil {
		t.Fatal(err)
	}
	var ob outboxDoc
	if err := d.get(context.Background(), d.outbox, "chat.created:c1", &ob); err != nil || !strings.HasSuffix(ob.Body, `"data":{}}`) {
		t.Fatalf("stored body %q (%v)", ob.Body, err)
	}
}

// TestTenantScoping: every stored document carries tenantId, and a document of another tenant in
// the same collections is neither counted, nor delivered, nor readable.
func TestTenantScoping(t *testing.T) {
	db, tenant := newDB(t)
	rcv := newReceiver(t, always(200))
	d := newDispatcher(t, db, tenant, staticEndpoints(rcv.srv.URL, "s"), fastOptions())
	ctx := context.Background()
	if _, err := d.outbox.InsertOne(ctx, outboxDoc{ID: "chat.created:foreign", TenantID: "other", Type: ChatCreated,
		CreatedAt: time.Now(), Body: `{}`, Targets: []target{}}); err != nil {
		t.Fatal(err)
	}
	if n := pending(t, d); n != 0 {
		t.Fatalf("Pending counts another tenant's event: %d", n)
	}
	if _, err := d.Status(ctx, "chat.created:foreign"); cell.ErrorCode(err) != cell.ENotFound {
		t.Fatalf("Status of another tenant's event: %v", err)
	}
	run(t, d)
	publish(t, d, "chat.created:mine", ChatCreated, map[string]string{})
	waitFor(t, 5*time.Second, "delivery", func() bool { return rcv.count() == 1 && pending(t, d) == 0 })
	time.Sleep(300 * time.Millisecond)
	if n := rcv.count(); n != 1 {
		t.Fatalf("receiver got %d requests, want only this tenant's event", n)
	}
	for _, name := range []string{EventsCollection, OutboxCollection, DeliveriesCollection, StateCollection} {
		cur, err := db.Collection(name).Find(ctx, bson.D{})
		if err != nil {
			t.Fatal(err)
		}
		var docs []bson.M
		if err := cur.All(ctx, &docs); err != nil {
			t.Fatal(err)
		}
		for _, doc := range docs {
			if tid, _ := doc["tenantId"].(string); tid != tenant && doc["_id"] != "chat.created:foreign" {
				t.Errorf("%s document %v has tenantId %q", name, doc["_id"], tid)
			}
		}
	}
}

// TestDeliveriesPaging: newest first, paged with before, URL without credentials, and the log
// keeps only the newest KeepDeliveries entries.
func TestDeliveriesPaging(t *testing.T) {
	db, tenant := newDB(t)
	rcv := newReceiver(t, always(200))
	u := strings.Replace(rcv.srv.URL, "http://", "http://user:hunter2@", 1) + "/hook?x=1"
	opts := fastOptions()
	opts.KeepDeliveries = 4
	d := newDispatcher(t, db, tenant, staticEndpoints(u, "s"), opts)
	run(t, d)
	for i := 1; i <= 6; i++ {
		publish(t, d, EventID(MessageCreated, "c1", strconv.Itoa(i)), MessageCreated, map[string]int{"i": i})
	}
	waitFor(t, 5*time.Second, "six deliveries", func() bool { return rcv.count() == 6 })
	// An event leaves the outbox after its attempt is logged (and the oldest entry pruned).
	waitFor(t, 2*time.Second, "empty outbox", func() bool { return pending(t, d) == 0 })
	page1, err := d.Deliveries(context.Background(), 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	page2, err := d.Deliveries(context.Background(), 2, page1[len(page1)-1].Seq)
	if err != nil {
		t.Fatal(err)
	}
	page3, err := d.Deliveries(context.Background(), 2, page2[len(page2)-1].Seq)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	for _, e := range append(append(page1, page2...), page3...) {
		seqs = append(seqs, e.Seq)
		if strings.Contains(e.URL, "hunter2") || !strings.HasSuffix(e.URL, "/hook?x=1") {
			t.Errorf("logged URL %q", e.URL)
		}
	}
	if !reflect.DeepEqual(seqs, []int64{6, 5, 4, 3}) {
		t.Fatalf("pages gave seqs %v, want [6 5 4 3] (entries 1 and 2 pruned)", seqs)
	}
	if e := page1[0]; e.EventID != EventID(MessageCreated, "c1", "6") {
		t.Fatalf("newest entry is %s", e.EventID)
	}
}

// TestSettingsChangeAtRuntime: the endpoint list is read before every attempt, so fixing a broken
// URL lets the pending event through, to the new URL, without a restart.
func TestSettingsChangeAtRuntime(t *testing.T) {
	db, tenant := newDB(t)
	broken := newReceiver(t, always(500))
	fixed := newReceiver(t, always(200))
	var mu sync.Mutex
	current := broken.srv.URL
	eps := func(context.Context) ([]Endpoint, error) {
		mu.Lock()
		defer mu.Unlock()
		return []Endpoint{{URL: current, Secret: "s", Events: []EventType{ChatResolved}}}, nil
	}
	d := newDispatcher(t, db, tenant, eps, fastOptions())
	run(t, d)
	publish(t, d, "chat.resolved:c1", ChatResolved, map[string]string{})
	waitFor(t, 5*time.Second, "a failed attempt", func() bool { return broken.count() >= 1 })
	mu.Lock()
	current = fixed.srv.URL
	mu.Unlock()
	waitFor(t, 5*time.Second, "delivery to the new URL", func() bool {
		s, _ := d.Status(context.Background(), "chat.resolved:c1")
		return s == StatusDelivered
	})
	if h := fixed.all(); len(h) != 1 || h[0].header.Get(HeaderEventID) != "chat.resolved:c1" {
		t.Fatalf("new endpoint got %d requests", len(h))
	}
}

// TestTimeoutAndRedirectFail: an endpoint slower than Options.Timeout, and one answering a
// redirect (never followed), both count as failed attempts and are retried.
func TestTimeoutAndRedirectFail(t *testing.T) {
	db, tenant := newDB(t)
	var slowCalls atomic.Int32
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slowCalls.Add(1) == 1 { // the first answer comes after the dispatcher gave up
			select {
			case <-release:
			case <-time.After(5 * time.Second):
			}
		}
		w.WriteHeader(200)
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) }) // runs first: unblocks the handler before Close waits
	target := newReceiver(t, always(200))
	redirect := newReceiver(t, func(int) int { return http.StatusTemporaryRedirect })
	redirect.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		redirect.mu.Lock()
		redirect.hits = append(redirect.hits, hit{header: r.Header.Clone(), at: time.Now()})
		redirect.mu.Unlock()
		http.Redirect(w, r, target.srv.URL, http.StatusTemporaryRedirect)
	})
	eps := func(context.Context) ([]Endpoint, error) {
		return []Endpoint{
			{URL: slow.URL, Secret: "s", Events: []EventType{ChatCreated}},
			{URL: redirect.srv.URL, Secret: "s", Events: []EventType{ChatCreated}},
		}, nil
	}
	opts := fastOptions()
	opts.Timeout = 300 * time.Millisecond
	opts.MaxAttempts = 2
	d := newDispatcher(t, db, tenant, eps, opts)
	run(t, d)
	publish(t, d, "chat.created:c1", ChatCreated, map[string]string{})
	waitFor(t, 5*time.Second, "finished", func() bool {
		s, _ := d.Status(context.Background(), "chat.created:c1")
		return s == StatusFailed
	})
	waitFor(t, 2*time.Second, "empty outbox", func() bool { return pending(t, d) == 0 })
	if n := target.count(); n != 0 {
		t.Fatalf("redirect target got %d requests, want 0 (redirects are not followed)", n)
	}
	log, err := d.Deliveries(context.Background(), 10, 0)
	if err != nil || len(log) != 4 {
		t.Fatalf("Deliveries: %+v, %v", log, err)
	}
	byURL := map[string][]Delivery{}
	for _, e := range log {
		byURL[e.URL] = append([]Delivery{e}, byURL[e.URL]...) // oldest first
	}
	if s := byURL[slow.URL]; len(s) != 2 || s[0].Error != "timeout after 300ms" || s[0].StatusCode != 0 ||
		s[0].DurationMS < 250 || s[1].StatusCode != 200 || s[1].Outcome != OutcomeDelivered {
		t.Errorf("slow endpoint attempts: %+v", s)
	}
	if r := byURL[redirect.srv.URL]; len(r) != 2 || r[0].StatusCode != 307 || r[1].StatusCode != 307 ||
		r[1].Outcome != OutcomeFailed {
		t.Errorf("redirecting endpoint attempts: %+v", r)
	}
}
