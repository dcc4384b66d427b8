package service

import (
	"context"
	"sort"
	"sync"
	"time"

	"atende/cell"
)

// The open-chat directory.
//
// Routing passes (every 2 s and on every queue change), queue positions and the inactivity timers
// need the tenant's open chats. FerretDB v1 pushes down no filter but one on `_id`, so asking the
// database for them reads and decodes every chat the tenant ever had: at 100,000 closed chats,
// seconds of CPU for each pass. The directory keeps, in memory, a summary of the open (queued and
// active) chats instead: every chat write of this process updates it (mutateChat, openChat), and
// a full read refreshes it every DirectoryRefresh, which also brings in what other replicas changed.
//
// It only chooses candidates. Every action taken on one (an assignment, a close) re-reads the
// chat under its lock and re-checks its state, and capacity is held by slot claims, so a stale
// entry costs at most a wasted point read or a pass that waits for the next refresh; never a
// wrong assignment.

// DirectoryRefresh is how often the directory is rebuilt from a full read of the chats (10 s, the
// period of the timer sweep, which read every chat before the directory existed): a chat opened
// on another replica is routed by this one within it.
const DirectoryRefresh = 10 * time.Second


// recentWaits is how many of the latest accept waits the queue estimate uses (50).
const recentWaits = 50

// dirEntry is what the directory keeps of one open chat.
type dirEntry struct {
	ID, DepartmentID, AgentID string
	Status                    cell.ChatStatus
	CreatedAt, LastActivityAt time.Time
	// QueuedSince is when the chat last entered the queue (creation or its last transition).
	QueuedSince time.Time
	Assignment  int
}

// chatDirectory is the open-chat directory; its zero value is empty and due for a refresh.
type chatDirectory struct {
	mu     sync.Mutex
	open   map[string]dirEntry
	waits  []float64 // the latest accept waits in seconds, oldest first
	waited map[string]bool
	at     time.Time // of the last full refresh
	// during holds the chats this process wrote while a refresh was reading, re-applied on top
	// of what the read saw; nil when no refresh is running.
	during map[string]cell.Chat
}

// entryOf summarises c.
func entryOf(c cell.Chat) dirEntry {
	since := c.CreatedAt
	if n := len(c.History); n > 0 {
		since = c.History[n-1].At
	}
	return dirEntry{ID: c.ID, DepartmentID: c.DepartmentID, AgentID: c.AgentID, Status: c.Status, CreatedAt: c.CreatedAt,
		LastActivityAt: c.LastActivityAt, QueuedSince: since, Assignment: c.Assignment}
}

// dirNote records c as this process just wrote it.
func (s *Service) dirNote(c cell.Chat) {
	d := &s.dir
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.during != nil {
		d.during[c.ID] = c
	}
	if d.open == nil {
		d.open, d.waited = map[string]dirEntry{}, map[string]bool{}
	}
	d.apply(c)
}

// apply puts c into the directory (or takes it out when closed).
func (d *chatDirectory) apply(c cell.Chat) {
	if c.Status.Open() {
		d.open[c.ID] = entryOf(c)
	} else {
		delete(d.open, c.ID)
	}
	if c.AcceptedAt != nil && !d.waited[c.ID] {
		d.addWait(c.ID, c.AcceptedAt.Sub(c.CreatedAt).Seconds())
	}
}

// addWait appends one accept wait, keeping the latest recentWaits.
func (d *chatDirectory) addWait(chatID string, seconds float64) {
	d.waited[chatID] = true
	d.waits = append(d.waits, seconds)
	if len(d.waits) > recentWaits {
		d.waits = d.waits[len(d.waits)-recentWaits:]
	}
}

// openChats returns the open chats, oldest first, and the latest accept waits, refreshing the
// directory from the database when it is older than DirectoryRefresh.
func (s *Service) openChats(ctx context.Context) ([]dirEntry, []float64, error) {
	d := &s.dir
	d.mu.Lock()
	due := d.open == nil || time.Since(d.at) >= DirectoryRefresh
	d.mu.Unlock()
	if due {
		if err := s.refreshDirectory(ctx); err != nil {
			return nil, nil, err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]dirEntry, 0, len(d.open))
	for _, e := range d.open {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out, append([]float64(nil), d.waits...), nil
}

// refreshDirectory rebuilds the directory from one read of every chat. Chats this process wrote
// during the read are re-applied as written (they are at least as new as what the read saw).
func (s *Service) refreshDirectory(ctx context.Context) error {
	started := time.Now()
	s.dirMu.Lock() // one refresh at a time
	defer s.dirMu.Unlock()
	d := &s.dir
	d.mu.Lock()
	fresh := d.open != nil && d.at.After(started)
	if !fresh {
		d.during = map[string]cell.Chat{}
	}
	d.mu.Unlock()
	if fresh {
		return nil // another caller refreshed while this one waited
	}
	chats, err := s.store.AllChats(ctx)
	if err != nil {
		d.mu.Lock()
		d.during = nil
		d.mu.Unlock()
		return err
	}
	open := map[string]dirEntry{}
	var waits []float64
	waited := map[string]bool{}
	for i := len(chats) - 1; i >= 0 && len(waits) < recentWaits; i-- {
		if c := chats[i]; c.AcceptedAt != nil {
			waits = append(waits, c.AcceptedAt.Sub(c.CreatedAt).Seconds())
			waited[c.ID] = true
		}
	}
	for i, j := 0, len(waits)-1; i < j; i, j = i+1, j-1 { // oldest first
		waits[i], waits[j] = waits[j], waits[i]
	}
	for _, c := range chats {
		if c.Status.Open() {
			open[c.ID] = entryOf(c)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.open, d.waits, d.waited, d.at = open, waits, waited, time.Now()
	for _, c := range d.during {
		d.apply(c)
	}
	d.during = nil
	return nil
}

// dirActivity records that an open chat's stored last activity is now at (its hint was written).
func (s *Service) dirActivity(chatID string, at time.Time) {
	d := &s.dir
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.open[chatID]; ok && at.After(e.LastActivityAt) {
		e.LastActivityAt = at
		d.open[chatID] = e
	}
}
